"""`mpiexec -np 2 attn train reverse --mpi` trains the reversal model
data-parallel (issue 15): each process takes 64 of every 128 sequences and
the gradients are averaged (attn_mpi_allreduce_mean) before each step, which
is the whole batch's gradient; so it must train as one process does over the
whole batch, up to float rounding. The reduced run of
test_cli_train_reverse.py (12,800 sequences, 10 epochs, 1,000 steps), once in
one process and once on 2 ranks:
  - epoch 1's loss equal within 1e-4 relative (rounding has not grown yet);
  - every epoch's loss within 2% relative, the test accuracy within 2 points
    (measured: 0.362790 and 0.363310 at epoch 10, 91.41% and 91.36%);
  - one header line says so, process 0 alone prints, the last line is
    "test accuracy: NN.NN%";
  - 3 processes, which do not divide the batch of 128, are refused.

Run by Meson as: python3 test_train_reverse_mpi.py PATH-TO-attn MPIEXEC [ARGS...]
"""
import os
import re
import subprocess
import sys

PROGRESS = re.compile(r"^epoch +(\d+)/(\d+): loss ([0-9.]+), accuracy ([0-9.]+)%, ([0-9.]+) s$",
                      re.M)
ACCURACY = re.compile(r"^test accuracy: ([0-9]+\.[0-9]{2})%$", re.M)
ARGS = ["train", "reverse", "--epochs", "10", "--train-size", "12800", "--test-size", "256",
        "--seed", "42"]


def run(argv):
    p = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    return p.returncode, p.stdout, p.stderr


def losses_and_accuracy(out):
    losses = [float(l) for _, _, l, _, _ in PROGRESS.findall(out)]
    m = ACCURACY.findall(out)
    assert len(losses) == 10 and len(m) == 1, out
    assert out.rstrip("\n").split("\n")[-1].startswith("test accuracy: "), out
    return losses, float(m[0])


def main():
    attn, mpiexec, mpi_args = os.path.abspath(sys.argv[1]), sys.argv[2], sys.argv[3:]
    rc, one, err = run([attn] + ARGS)
    assert rc == 0, one + err
    rc, two, err = run([mpiexec, "-np", "2"] + mpi_args + [attn] + ARGS + ["--mpi"])
    assert rc == 0, two + err
    print(one)
    print(two)
    assert "data-parallel over 2 processes: 64 sequences of every batch each" in two, two
    assert two.count("attn train reverse: UvA tutorial 6") == 1, "process 1 printed:\n" + two
    l1, a1 = losses_and_accuracy(one)
    l2, a2 = losses_and_accuracy(two)
    first = abs(l2[0] - l1[0]) / l1[0]
    worst = max(abs(b - a) / a for a, b in zip(l1, l2))
    print("mpi: data-parallel reverse on 2 ranks: epoch 1 loss %.3g relative, worst epoch %.3g,"
          " test accuracy %.2f%% vs %.2f%%" % (first, worst, a2, a1))
    assert first <= 1e-4, (l1, l2)
    assert worst <= 0.02, (l1, l2)
    assert abs(a2 - a1) <= 2.0, (a1, a2)
    assert l2[-1] < 1.0 and a2 > 60.0, two

    rc, out, err = run([mpiexec, "-np", "3"] + mpi_args + [attn] + ARGS + ["--mpi"])
    assert rc != 0, out
    assert "--mpi: 3 processes do not divide the batch of 128" in err, err
    return 0


if __name__ == "__main__":
    sys.exit(main())
