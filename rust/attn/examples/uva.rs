//! `cargo run --example uva`: the UvA tutorial 6 example through the safe
//! wrapper, printed as the tutorial prints it.

fn main() -> Result<(), attn::Error> {
    let q = [0.3367f32, 0.1288, 0.2345, 0.2303, -1.1229, -0.1863];
    let k = [2.2082f32, -0.6380, 0.4617, 0.2674, 0.5349, 0.8094];
    let v = [1.1103f32, -1.6898, -0.9890, 0.9580, 1.3221, 0.8172];
    let mut ctx = attn::Context::new()?;
    let op = attn::Sdpa::new(1, 1, 1, 3, 3, 2, 2)?;
    let mut values = vec![0.0f32; op.out_len()];
    let mut attention = vec![0.0f32; op.weights_len()];
    op.forward(&mut ctx, &q, &k, &v, None, &mut values, Some(&mut attention), None)?;
    println!("libattn {}", attn::version());
    println!("Values");
    for row in values.chunks(2) {
        println!("  {:7.4} {:7.4}", row[0], row[1]);
    }
    println!("Attention");
    for row in attention.chunks(3) {
        println!("  {:.4} {:.4} {:.4}", row[0], row[1], row[2]);
    }
    Ok(())
}
