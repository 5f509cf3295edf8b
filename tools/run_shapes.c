/*
 * run_shapes.c — shapes of `attn run` (see run_shapes.h for the rules).
 */
#include "run_shapes.h"

#include "cli.h"

#define CMD "run"

/* The batch, heads, sequence and feature sizes of one input file. */
typedef struct bhsd {
    int64_t b, h, s, d;
} bhsd;

static bhsd split(const npy_array *a, int bshd)
{
    const int64_t *x = a->shape;
    switch (a->ndim) {
    case 2:  return (bhsd){1, 1, x[0], x[1]};
    case 3:  return (bhsd){x[0], 1, x[1], x[2]};
    default: return bshd ? (bhsd){x[0], x[2], x[1], x[3]} : (bhsd){x[0], x[1], x[2], x[3]};
    }
}

static int check_rank(const char *path, const npy_array *a, const char *role)
{
    if (a->ndim >= 2 && a->ndim <= 4)
        return CLI_OK;
    char shape[128];
    return cli_refuse(CMD, "%s: %s must be 2-D [S, D], 3-D [B, S, D] or 4-D [B, H, S, D] "
                           "(or [B, S, H, D]); its shape is %s", path, role,
                      npy_shape_string(a, shape, sizeof shape));
}

/* "K.npy and V.npy disagree on the number of keys: 7 in (1, 2, 7, 4), 6 in ..." */
static int disagree(const char *pa, const npy_array *a, int64_t na, const char *pb,
                    const npy_array *b, int64_t nb, const char *what)
{
    char sa[128], sb[128];
    return cli_refuse(CMD, "%s and %s disagree on %s: %lld in %s, %lld in %s", pa, pb, what,
                      (long long)na, npy_shape_string(a, sa, sizeof sa), (long long)nb,
                      npy_shape_string(b, sb, sizeof sb));
}

int run_shape_read(const qkv_files *f, int bshd, sdpa_shape *s)
{
    if (check_rank(f->q_path, f->q, "the queries") || check_rank(f->k_path, f->k, "the keys") ||
        check_rank(f->v_path, f->v, "the values"))
        return CLI_REFUSED;
    if (f->k->ndim != f->q->ndim)
        return disagree(f->q_path, f->q, f->q->ndim, f->k_path, f->k, f->k->ndim,
                        "the number of dimensions");
    if (f->v->ndim != f->q->ndim)
        return disagree(f->q_path, f->q, f->q->ndim, f->v_path, f->v, f->v->ndim,
                        "the number of dimensions");
    bhsd q = split(f->q, bshd), k = split(f->k, bshd), v = split(f->v, bshd);
    if (k.b != q.b)
        return disagree(f->q_path, f->q, q.b, f->k_path, f->k, k.b, "the batch size");
    if (v.b != q.b)
        return disagree(f->q_path, f->q, q.b, f->v_path, f->v, v.b, "the batch size");
    if (v.s != k.s)
        return disagree(f->k_path, f->k, k.s, f->v_path, f->v, v.s, "the number of keys");
    if (v.h != k.h)
        return disagree(f->k_path, f->k, k.h, f->v_path, f->v, v.h, "the number of heads");
    if (k.d != q.d)
        return disagree(f->q_path, f->q, q.d, f->k_path, f->k, k.d, "the query/key dimension");
    *s = (sdpa_shape){f->q->ndim, bshd, q.b, q.h, k.h, q.s, k.s, q.d, v.d};
    return CLI_OK;
}

int run_out_shape(const sdpa_shape *s, int64_t shape[4])
{
    switch (s->ndim) {
    case 2:
        shape[0] = s->len_q, shape[1] = s->dim_v;
        return 2;
    case 3:
        shape[0] = s->batch, shape[1] = s->len_q, shape[2] = s->dim_v;
        return 3;
    default:
        shape[0] = s->batch;
        shape[1] = s->bshd ? s->len_q : s->heads_q;
        shape[2] = s->bshd ? s->heads_q : s->len_q;
        shape[3] = s->dim_v;
        return 4;
    }
}

int run_weights_shape(const sdpa_shape *s, int64_t shape[4])
{
    switch (s->ndim) {
    case 2:
        shape[0] = s->len_q, shape[1] = s->len_kv;
        return 2;
    case 3:
        shape[0] = s->batch, shape[1] = s->len_q, shape[2] = s->len_kv;
        return 3;
    default:
        shape[0] = s->batch, shape[1] = s->heads_q, shape[2] = s->len_q, shape[3] = s->len_kv;
        return 4;
    }
}

int run_lse_shape(const sdpa_shape *s, int64_t shape[3])
{
    int64_t w[4];
    int n = run_weights_shape(s, w);
    for (int d = 0; d < n - 1; d++)
        shape[d] = w[d];
    return n - 1;
}

int run_mask_dims(const char *path, const npy_array *m, const sdpa_shape *s, int64_t dims[4])
{
    int64_t w[4];
    int r = run_weights_shape(s, w);
    char ms[128];
    npy_shape_string(m, ms, sizeof ms);
    if (m->ndim < 1 || m->ndim > r)
        return cli_refuse(CMD, "%s: a mask has 1 to %d dimensions for %d-D inputs; its shape is "
                               "%s", path, r, s->ndim, ms);
    /* Right-align the mask's dimensions with the weights' [.., Lq, Lkv]. */
    int64_t aligned[4] = {1, 1, 1, 1};
    for (int d = 0; d < m->ndim; d++) {
        int wd = r - m->ndim + d;
        int64_t n = m->shape[d];
        if (n != w[wd] && n != 1)
            return cli_refuse(CMD, "%s: shape %s does not broadcast against the weights' "
                                   "shape: dimension %d is %lld, not 1 or %lld",
                              path, ms, d, (long long)n, (long long)w[wd]);
        aligned[wd] = n;
    }
    if (aligned[r - 1] != s->len_kv)
        return cli_refuse(CMD, "%s: shape %s: the last dimension must be the number of keys "
                               "(%lld), not broadcast", path, ms, (long long)s->len_kv);
    /* Map the weights' dimensions to libattn's [mb, mh, mq, len_kv]. */
    switch (r) {
    case 2:  dims[0] = 1, dims[1] = 1, dims[2] = aligned[0], dims[3] = aligned[1]; break;
    case 3:  dims[0] = aligned[0], dims[1] = 1, dims[2] = aligned[1], dims[3] = aligned[2]; break;
    default: for (int d = 0; d < 4; d++) dims[d] = aligned[d];
    }
    return CLI_OK;
}

int run_lengths_check(const char *path, const npy_array *lens, const sdpa_shape *s,
                      int *per_query)
{
    char ls[128];
    npy_shape_string(lens, ls, sizeof ls);
    int scalar_ok = s->ndim == 2 && lens->ndim == 0;
    if (!scalar_ok && (lens->ndim < 1 || lens->ndim > 2))
        return cli_refuse(CMD, "%s: valid lengths are 1-D [batch] or 2-D [batch, len_q]; the "
                               "shape is %s", path, ls);
    *per_query = lens->ndim == 2;
    if (lens->ndim >= 1 && lens->shape[0] != s->batch)
        return cli_refuse(CMD, "%s: shape %s: the first dimension must be the batch size "
                               "(%lld)", path, ls, (long long)s->batch);
    if (lens->ndim == 2 && lens->shape[1] != s->len_q)
        return cli_refuse(CMD, "%s: shape %s: the second dimension must be the number of "
                               "queries (%lld)", path, ls, (long long)s->len_q);
    const int64_t *v = lens->data;
    for (int64_t i = 0; i < lens->count; i++)
        if (v[i] < 0 || v[i] > s->len_kv)
            return cli_refuse(CMD, "%s: length %lld at flat index %lld is outside [0, %lld] "
                                   "(the number of keys)", path, (long long)v[i], (long long)i,
                              (long long)s->len_kv);
    return CLI_OK;
}
