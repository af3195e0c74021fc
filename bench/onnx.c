/* onnx.c - the benchmark's Llama weights (a safetensors file with Hugging Face names,
 * bench_mkweights) as an ONNX model for ONNX Runtime, the prefill peer of
 * bench/ortpeer.sh: the prefill of N tokens from position 0 as
 * examples/llama/llama.elide computes it (RMSNorm, RoPE rotate_half with theta 1e4,
 * causal attention with grouped-query heads, SwiGLU, the final norm and lm_head on
 * the last position only), input "tokens" int64[N], output "logits" float[VOCAB].
 * Standard operators of opset 17 in the form exporters write them: every linear a
 * MatMul by the transposed weight, RMSNorm as Pow, ReduceMean, Add, Sqrt, Div, Mul
 * (the pattern ONNX Runtime fuses).  With `fused`, attention (RoPE included) is ONNX
 * Runtime's contrib operator com.microsoft GroupQueryAttention instead, as ONNX
 * Runtime's own model builder writes Llama.  The protobuf encoding is written here by
 * hand (ModelProto, IR version 8); the weights are initializers with raw_data,
 * streamed from the safetensors file one tensor at a time.
 * Usage: bench_onnx IN.safetensors OUT.onnx DIM LAYERS HEADS KV_HEADS FFN VOCAB N [fused]
 *        bench_onnx tiny OUT.onnx   (y = x + 1 on float[1]: ONNX Runtime's call overhead) */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ir/ir.h"

/* protobuf wire types and the ONNX element types used here */
enum { WT_VARINT = 0, WT_LEN = 2, WT_I32 = 5 };
enum { ONNX_FLOAT = 1, ONNX_INT32 = 6, ONNX_INT64 = 7 };
enum { ATTR_FLOAT = 1, ATTR_INT = 2, ATTR_INTS = 7 };

typedef struct Buf {
	uint8_t *p;      /* bytes */
	size_t n, cap;   /* used, allocated */
} Buf;

/* A weight streamed from the safetensors file after the small part of the graph. */
typedef struct Big {
	char name[96];        /* initializer name */
	char hf[96];          /* safetensors name */
	int64_t rows, cols;   /* the safetensors shape [rows, cols] */
	int transpose;        /* 1: written as [cols, rows] (a MatMul operand) */
	Buf head;             /* the TensorProto's fields before raw_data */
} Big;

static Buf graph;            /* nodes, inputs, outputs, small initializers */
static int fused;            /* 1: attention as ONNX Runtime's GroupQueryAttention */
static Big *bigs;
static int nbig, capbig;
static char **names;         /* every name made by nm(), freed at the end */
static int nnames, capnames;

static void
die(const char *msg)
{
	fprintf(stderr, "bench_onnx: %s\n", msg);
	exit(1);
}

static void *
grow(void *p, int *cap, int need, size_t size)
{
	if (need <= *cap)
		return p;
	*cap = *cap ? 2 * *cap : 64;
	if (*cap < need)
		*cap = need;
	p = realloc(p, (size_t)*cap * size);
	if (!p)
		die("out of memory");
	return p;
}

static void
put(Buf *b, const void *p, size_t n)
{
	if (b->n + n > b->cap) {
		size_t c = b->cap ? 2 * b->cap : 256;
		while (c < b->n + n)
			c *= 2;
		b->p = realloc(b->p, c);
		if (!b->p)
			die("out of memory");
		b->cap = c;
	}
	memcpy(b->p + b->n, p, n);
	b->n += n;
}

static size_t
varint_len(uint64_t v)
{
	size_t n = 1;
	for (; v >= 0x80; v >>= 7)
		n++;
	return n;
}

static void
put_varint(Buf *b, uint64_t v)
{
	uint8_t t[10];
	size_t n = 0;
	for (; v >= 0x80; v >>= 7)
		t[n++] = (uint8_t)(v | 0x80);
	t[n++] = (uint8_t)v;
	put(b, t, n);
}

static void
put_tag(Buf *b, int field, int wire)
{
	put_varint(b, (uint64_t)field << 3 | (uint64_t)wire);
}

static void
put_int(Buf *b, int field, int64_t v)
{
	put_tag(b, field, WT_VARINT);
	put_varint(b, (uint64_t)v);
}

static void
put_bytes(Buf *b, int field, const void *p, size_t n)
{
	put_tag(b, field, WT_LEN);
	put_varint(b, n);
	put(b, p, n);
}

static void
put_str(Buf *b, int field, const char *s)
{
	put_bytes(b, field, s, strlen(s));
}

/* Appends message m as field `field` of b and empties m. */
static void
put_msg(Buf *b, int field, Buf *m)
{
	put_bytes(b, field, m->p, m->n);
	free(m->p);
	*m = (Buf){ 0 };
}

/* A name made from a format, kept until the end. */
static const char *
nm(const char *fmt, ...)
{
	char tmp[128];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(tmp, sizeof tmp, fmt, ap);
	va_end(ap);
	names = grow(names, &capnames, nnames + 1, sizeof *names);
	names[nnames] = strdup(tmp);
	if (!names[nnames])
		die("out of memory");
	return names[nnames++];
}

/* ---- attributes (AttributeProto: name 1, f 2, i 3, ints 8, type 20) ---- */

static void
attr_int(Buf *attrs, const char *name, int64_t v)
{
	Buf a = { 0 };
	put_str(&a, 1, name);
	put_int(&a, 20, ATTR_INT);
	put_int(&a, 3, v);
	put_msg(attrs, 5, &a);
}

static void
attr_ints(Buf *attrs, const char *name, const int64_t *v, int n)
{
	Buf a = { 0 };
	put_str(&a, 1, name);
	put_int(&a, 20, ATTR_INTS);
	for (int i = 0; i < n; i++)
		put_int(&a, 8, v[i]);
	put_msg(attrs, 5, &a);
}

/* ---- nodes (NodeProto: input 1, output 2, name 3, op_type 4, attribute 5) ---- */

/* Node `op` of `domain` ("" for ONNX's) from inputs in[0..nin) ("" for an omitted
 * optional one) to outputs out[0..nout); attrs (may be NULL) holds encoded attribute
 * fields and is emptied. */
static void
emit(const char *op, const char *domain, const char *const *in, int nin, const char *const *out, int nout, Buf *attrs)
{
	static int count;
	Buf n = { 0 };
	for (int i = 0; i < nin; i++)
		put_str(&n, 1, in[i]);
	for (int i = 0; i < nout; i++)
		put_str(&n, 2, out[i]);
	put_str(&n, 3, nm("n%d_%s", count++, op));
	put_str(&n, 4, op);
	if (*domain)
		put_str(&n, 7, domain);
	if (attrs && attrs->n) {
		put(&n, attrs->p, attrs->n);
		free(attrs->p);
		*attrs = (Buf){ 0 };
	}
	put_msg(&graph, 1, &n);
}

/* Node `op` computing `out` from the NULL-terminated inputs; returns out. */
static const char *
node(const char *op, const char *out, Buf *attrs, ...)
{
	const char *in[8];
	int nin = 0;
	va_list ap;
	va_start(ap, attrs);
	for (const char *x; (x = va_arg(ap, const char *));)
		if (nin < 8)
			in[nin++] = x;
	va_end(ap);
	emit(op, "", in, nin, &out, 1, attrs);
	return out;
}

/* ---- tensors (TensorProto: dims 1, data_type 2, name 8, raw_data 9) ---- */

static void
tensor_head(Buf *t, const char *name, int type, const int64_t *dims, int nd)
{
	for (int i = 0; i < nd; i++)
		put_int(t, 1, dims[i]);
	put_int(t, 2, type);
	put_str(t, 8, name);
}

/* A small initializer held in the graph buffer; returns its name. */
static const char *
init_raw(const char *name, int type, const int64_t *dims, int nd, const void *data, size_t bytes)
{
	Buf t = { 0 };
	tensor_head(&t, name, type, dims, nd);
	put_bytes(&t, 9, data, bytes);
	put_msg(&graph, 5, &t);
	return name;
}

static const char *
init_i64(const char *name, const int64_t *v, int n)
{
	int64_t d = n;
	return init_raw(name, ONNX_INT64, &d, 1, v, (size_t)n * sizeof *v);
}

/* A float scalar (rank 0). */
static const char *
init_scalar(const char *name, float v)
{
	return init_raw(name, ONNX_FLOAT, NULL, 0, &v, sizeof v);
}

/* A weight initializer streamed later; returns its name. */
static const char *
init_big(const char *name, const char *hf, int64_t rows, int64_t cols, int transpose)
{
	bigs = grow(bigs, &capbig, nbig + 1, sizeof *bigs);
	Big *b = &bigs[nbig++];
	*b = (Big){ .rows = rows, .cols = cols, .transpose = transpose };
	snprintf(b->name, sizeof b->name, "%s", name);
	snprintf(b->hf, sizeof b->hf, "%s", hf);
	int64_t dims[2] = { transpose ? cols : rows, transpose ? rows : cols };
	tensor_head(&b->head, b->name, ONNX_FLOAT, dims, cols ? 2 : 1);
	return name; /* not b->name: bigs may move */
}

static uint64_t
big_raw_bytes(const Big *b)
{
	return (uint64_t)b->rows * (uint64_t)(b->cols ? b->cols : 1) * 4;
}

/* Bytes of the TensorProto of b (its head and raw_data). */
static uint64_t
big_len(const Big *b)
{
	uint64_t raw = big_raw_bytes(b);
	return b->head.n + 1 + varint_len(raw) + raw;
}

/* A graph input or output (ValueInfoProto: name 1, type 2; TypeProto.tensor_type 1:
 * elem_type 1, shape 2; TensorShapeProto.dim 1: dim_value 1). */
static void
value_info(int field, const char *name, int type, const int64_t *dims, int nd)
{
	Buf shape = { 0 }, tt = { 0 }, ty = { 0 }, vi = { 0 };
	for (int i = 0; i < nd; i++) {
		Buf d = { 0 };
		put_int(&d, 1, dims[i]);
		put_msg(&shape, 1, &d);
	}
	put_int(&tt, 1, type);
	put_msg(&tt, 2, &shape);
	put_msg(&ty, 1, &tt);
	put_str(&vi, 1, name);
	put_msg(&vi, 2, &ty);
	put_msg(&graph, field, &vi);
}

/* ---- the model ---- */

typedef struct Shape {
	int64_t dim, layers, heads, kvh, ffn, vocab, n; /* sizes; n: the prompt length */
	int64_t hd, kvd, group;                          /* head size, kv width, heads per kv head */
} Shape;

static const char *
op1(const char *op, const char *out, const char *a)
{
	return node(op, out, NULL, a, NULL);
}

static const char *
op2(const char *op, const char *out, const char *a, const char *b)
{
	return node(op, out, NULL, a, b, NULL);
}

static const char *
reshape(const char *out, const char *x, const char *shape)
{
	return op2("Reshape", out, x, shape);
}

static const char *
transpose(const char *out, const char *x, const int64_t *perm, int n)
{
	Buf a = { 0 };
	attr_ints(&a, "perm", perm, n);
	return node("Transpose", out, &a, x, NULL);
}

/* y = x / sqrt(mean(x^2) + eps) * w over the last axis. */
static const char *
rmsnorm(const char *p, const char *x, const char *w)
{
	Buf a = { 0 };
	int64_t axis = -1;
	attr_ints(&a, "axes", &axis, 1);
	attr_int(&a, "keepdims", 1);
	const char *sq = op2("Pow", nm("%s.sq", p), x, "two");
	const char *ms = node("ReduceMean", nm("%s.ms", p), &a, sq, NULL);
	const char *r = op1("Sqrt", nm("%s.rms", p), op2("Add", nm("%s.mse", p), ms, "eps"));
	return op2("Mul", nm("%s.out", p), w, op2("Div", nm("%s.div", p), x, r));
}

/* Rotary embedding of x [N, heads, hd], rotate_half style: with x = [x1, x2] per head,
 * y = x * cos + [x2, x1] * [-sin, sin] (the tables hold both halves). */
static const char *
rope(const char *p, const char *x)
{
	Buf a = { 0 };
	attr_int(&a, "axis", -1);
	const char *x1 = nm("%s.x1", p), *x2 = nm("%s.x2", p), *halves[2] = { x1, x2 };
	emit("Split", "", &x, 1, halves, 2, &a);
	attr_int(&a, "axis", -1);
	const char *sw = node("Concat", nm("%s.swap", p), &a, x2, x1, NULL);
	const char *c = op2("Mul", nm("%s.cos", p), x, "rope_cos");
	const char *s = op2("Mul", nm("%s.sin", p), sw, "rope_sin");
	return op2("Add", nm("%s.out", p), c, s);
}

static void
small_inits(const Shape *s)
{
	const int64_t n = s->n, hd = s->hd;
	init_scalar("two", 2.0f);
	init_scalar("eps", 1e-5f);
	init_scalar("attn_scale", (float)(1.0 / sqrt((double)hd)));
	/* cos and sin per position and pair, computed in double as elide's tables are */
	float *cs = malloc((size_t)(n * hd) * sizeof *cs), *sn = malloc((size_t)(n * hd) * sizeof *sn);
	float *mask = malloc((size_t)(n * n) * sizeof *mask);
	if (!cs || !sn || !mask)
		die("out of memory");
	for (int64_t t = 0; t < n; t++)
		for (int64_t j = 0; j < hd / 2; j++) {
			double f = pow(10000.0, -2.0 * (double)j / (double)hd), a = (double)t * f;
			cs[t * hd + j] = cs[t * hd + j + hd / 2] = (float)cos(a);
			sn[t * hd + j] = (float)-sin(a);
			sn[t * hd + j + hd / 2] = (float)sin(a);
		}
	for (int64_t i = 0; i < n; i++)
		for (int64_t j = 0; j < n; j++)
			mask[i * n + j] = j <= i ? 0.0f : -INFINITY;
	int64_t rd[3] = { n, 1, hd }, md[2] = { n, n };
	init_raw("rope_cos", ONNX_FLOAT, rd, 3, cs, (size_t)(n * hd) * sizeof *cs);
	init_raw("rope_sin", ONNX_FLOAT, rd, 3, sn, (size_t)(n * hd) * sizeof *sn);
	init_raw("causal_mask", ONNX_FLOAT, md, 2, mask, (size_t)(n * n) * sizeof *mask);
	free(cs);
	free(sn);
	free(mask);
	if (fused) {
		/* GroupQueryAttention's rotary caches [n, hd/2], the lengths it wants (the
		 * sequence's last index and its length) and the batch-of-one shapes */
		float *c2 = malloc((size_t)(n * hd / 2) * sizeof *c2), *s2 = malloc((size_t)(n * hd / 2) * sizeof *s2);
		if (!c2 || !s2)
			die("out of memory");
		for (int64_t t = 0; t < n; t++)
			for (int64_t j = 0; j < hd / 2; j++) {
				double a = (double)t * pow(10000.0, -2.0 * (double)j / (double)hd);
				c2[t * hd / 2 + j] = (float)cos(a);
				s2[t * hd / 2 + j] = (float)sin(a);
			}
		int64_t cd[2] = { n, hd / 2 }, one = 1, bq[3] = { 1, n, s->dim }, bkv[3] = { 1, n, s->kvd };
		init_raw("cos_cache", ONNX_FLOAT, cd, 2, c2, (size_t)(n * hd / 2) * sizeof *c2);
		init_raw("sin_cache", ONNX_FLOAT, cd, 2, s2, (size_t)(n * hd / 2) * sizeof *s2);
		free(c2);
		free(s2);
		int32_t last32 = (int32_t)(n - 1), total = (int32_t)n;
		init_raw("seqlens_k", ONNX_INT32, &one, 1, &last32, sizeof last32);
		init_raw("total_seq", ONNX_INT32, NULL, 0, &total, sizeof total);
		init_i64("shape_bq", bq, 3);
		init_i64("shape_bkv", bkv, 3);
	}
	int64_t q3[3] = { n, s->heads, hd }, k3[3] = { n, s->kvh, hd }, q4[4] = { n, s->kvh, s->group, hd };
	int64_t kt[4] = { s->kvh, 1, hd, n }, vt[4] = { s->kvh, 1, n, hd }, o2[2] = { n, s->dim };
	init_i64("shape_q3", q3, 3);
	init_i64("shape_k3", k3, 3);
	init_i64("shape_q4", q4, 4);
	init_i64("shape_kt", kt, 4);
	init_i64("shape_vt", vt, 4);
	init_i64("shape_o2", o2, 2);
	/* the last row as a [1, dim] block: ONNX Runtime's RMSNorm fusion breaks the graph
	 * when the normalised tensor has rank 1 */
	int64_t last = n - 1, v1[1] = { s->vocab };
	init_i64("last_row", &last, 1);
	init_i64("shape_logits", v1, 1);
}

/* Layer l's attention projections of h: the three MatMuls by q_proj, k_proj and
 * v_proj (into *q, *k, *v, rows of dim and kvd) and the o_proj initialiser (*wo). */
static void
projections(const Shape *s, int l, const char *h, const char **q, const char **k, const char **v, const char **wo)
{
	static const char *const proj[4] = { "q", "k", "v", "o" };
	const char *wt[4];
	for (int i = 0; i < 4; i++) {
		char w[96];
		snprintf(w, sizeof w, "model.layers.%d.self_attn.%s_proj.weight", l, proj[i]);
		wt[i] = init_big(nm("l%d.w%s", l, proj[i]), w, i == 1 || i == 2 ? s->kvd : s->dim, s->dim, 1);
	}
	*q = op2("MatMul", nm("l%d.q", l), h, wt[0]);
	*k = op2("MatMul", nm("l%d.k", l), h, wt[1]);
	*v = op2("MatMul", nm("l%d.v", l), h, wt[2]);
	*wo = wt[3];
}

static const char *
attention(const Shape *s, int l, const char *h)
{
	static const int64_t p_q[4] = { 1, 2, 0, 3 }, p_k[3] = { 1, 2, 0 }, p_v[3] = { 1, 0, 2 };
	static const int64_t p_o[4] = { 2, 0, 1, 3 };
	const char *wo, *q, *k, *v;
	projections(s, l, h, &q, &k, &v, &wo);
	q = rope(nm("l%d.qrope", l), reshape(nm("l%d.q3", l), q, "shape_q3"));
	k = rope(nm("l%d.krope", l), reshape(nm("l%d.k3", l), k, "shape_k3"));
	v = reshape(nm("l%d.v3", l), v, "shape_k3");
	/* queries [kvh, group, N, hd] against keys [kvh, 1, hd, N] and values [kvh, 1, N, hd] */
	q = transpose(nm("l%d.q4", l), reshape(nm("l%d.qg", l), q, "shape_q4"), p_q, 4);
	k = reshape(nm("l%d.kt", l), transpose(nm("l%d.kt3", l), k, p_k, 3), "shape_kt");
	v = reshape(nm("l%d.vt", l), transpose(nm("l%d.vt3", l), v, p_v, 3), "shape_vt");
	const char *sc = op2("Mul", nm("l%d.scaled", l), op2("MatMul", nm("l%d.scores", l), q, k), "attn_scale");
	sc = op2("Add", nm("l%d.masked", l), sc, "causal_mask");
	Buf a = { 0 };
	attr_int(&a, "axis", -1);
	const char *pr = node("Softmax", nm("l%d.probs", l), &a, sc, NULL);
	const char *o = op2("MatMul", nm("l%d.o4", l), pr, v);
	o = reshape(nm("l%d.o2", l), transpose(nm("l%d.ot", l), o, p_o, 4), "shape_o2");
	return op2("MatMul", nm("l%d.attn", l), o, wo);
}

/* The same attention as ONNX Runtime's contrib operator GroupQueryAttention (domain
 * com.microsoft: causal, grouped-query heads, rotary non-interleaved, i.e. rotate_half,
 * from the cos/sin caches), the form ONNX Runtime's own model builder writes for
 * Llama; the rest of the layer is the same. */
static const char *
attention_fused(const Shape *s, int l, const char *h)
{
	const char *wo, *q, *k, *v;
	projections(s, l, h, &q, &k, &v, &wo);
	q = reshape(nm("l%d.bq", l), q, "shape_bq");
	k = reshape(nm("l%d.bk", l), k, "shape_bkv");
	v = reshape(nm("l%d.bv", l), v, "shape_bkv");
	const char *in[9] = { q, k, v, "", "", "seqlens_k", "total_seq", "cos_cache", "sin_cache" };
	const char *out[3] = { nm("l%d.ctx", l), nm("l%d.present_k", l), nm("l%d.present_v", l) };
	Buf a = { 0 };
	attr_int(&a, "num_heads", s->heads);
	attr_int(&a, "kv_num_heads", s->kvh);
	attr_int(&a, "do_rotary", 1);
	attr_int(&a, "rotary_interleaved", 0);
	emit("GroupQueryAttention", "com.microsoft", in, 9, out, 3, &a);
	return op2("MatMul", nm("l%d.attn", l), reshape(nm("l%d.o2", l), out[0], "shape_o2"), wo);
}

static const char *
ffn(const Shape *s, int l, const char *h)
{
	char w[96];
	snprintf(w, sizeof w, "model.layers.%d.mlp.gate_proj.weight", l);
	const char *w1 = init_big(nm("l%d.w1", l), w, s->ffn, s->dim, 1);
	snprintf(w, sizeof w, "model.layers.%d.mlp.up_proj.weight", l);
	const char *w3 = init_big(nm("l%d.w3", l), w, s->ffn, s->dim, 1);
	snprintf(w, sizeof w, "model.layers.%d.mlp.down_proj.weight", l);
	const char *w2 = init_big(nm("l%d.w2", l), w, s->dim, s->ffn, 1);
	const char *g = op2("MatMul", nm("l%d.gate", l), h, w1);
	const char *u = op2("MatMul", nm("l%d.up", l), h, w3);
	const char *sg = op2("Mul", nm("l%d.silu", l), g, op1("Sigmoid", nm("l%d.sig", l), g));
	return op2("MatMul", nm("l%d.down", l), op2("Mul", nm("l%d.act", l), sg, u), w2);
}

static void
llama_graph(const Shape *s)
{
	int64_t in[1] = { s->n }, out[1] = { s->vocab };
	value_info(11, "tokens", ONNX_INT64, in, 1);
	value_info(12, "logits", ONNX_FLOAT, out, 1);
	small_inits(s);
	const char *emb = init_big("embed", "model.embed_tokens.weight", s->vocab, s->dim, 0);
	const char *x = op2("Gather", "x0", emb, "tokens");
	for (int l = 0; l < s->layers; l++) {
		char w[96];
		snprintf(w, sizeof w, "model.layers.%d.input_layernorm.weight", l);
		const char *an = init_big(nm("l%d.attn_norm", l), w, s->dim, 0, 0);
		snprintf(w, sizeof w, "model.layers.%d.post_attention_layernorm.weight", l);
		const char *fnw = init_big(nm("l%d.ffn_norm", l), w, s->dim, 0, 0);
		const char *h = rmsnorm(nm("l%d.an", l), x, an);
		x = op2("Add", nm("l%d.x1", l), x, fused ? attention_fused(s, l, h) : attention(s, l, h));
		h = rmsnorm(nm("l%d.fn", l), x, fnw);
		x = op2("Add", nm("l%d.x2", l), x, ffn(s, l, h));
	}
	Buf a = { 0 };
	attr_int(&a, "axis", 0);
	const char *last = node("Gather", "last", &a, x, "last_row", NULL);
	const char *norm = init_big("norm", "model.norm.weight", s->dim, 0, 0);
	const char *lm = init_big("lm_head", "lm_head.weight", s->vocab, s->dim, 1);
	reshape("logits", op2("MatMul", "logits_row", rmsnorm("final", last, norm), lm), "shape_logits");
}

static void
tiny_graph(void)
{
	int64_t d[1] = { 1 };
	value_info(11, "x", ONNX_FLOAT, d, 1);
	value_info(12, "y", ONNX_FLOAT, d, 1);
	float one = 1.0f;
	init_raw("one", ONNX_FLOAT, d, 1, &one, sizeof one);
	op2("Add", "y", "x", "one");
}

static FILE *out;

static void
wr(const void *p, size_t n)
{
	if (fwrite(p, 1, n, out) != n) {
		perror("bench_onnx: write");
		exit(1);
	}
}

static void
wr_buf(const Buf *b)
{
	wr(b->p, b->n);
}

/* Writes big's TensorProto as a graph initializer, its data read from st. */
static void
write_big(StFile *st, const Big *b)
{
	char err[256];
	const StTensor *t = st_find(st, b->hf);
	int64_t n = b->rows * (b->cols ? b->cols : 1), sn = 1;
	for (int d = 0; t && d < t->rank; d++)
		sn *= t->shape[d];
	if (!t || sn != n) {
		fprintf(stderr, "bench_onnx: tensor '%s' missing or of another size\n", b->hf);
		exit(1);
	}
	float *a = malloc((size_t)n * sizeof *a), *w = b->transpose ? malloc((size_t)n * sizeof *w) : a;
	if (!a || !w)
		die("out of memory");
	if (!st_read_f32(st, t, a, err, sizeof err))
		die(err);
	if (b->transpose)
		for (int64_t r = 0; r < b->rows; r++)
			for (int64_t c = 0; c < b->cols; c++)
				w[c * b->rows + r] = a[r * b->cols + c];
	Buf h = { 0 };
	put_tag(&h, 5, WT_LEN);
	put_varint(&h, big_len(b));
	put(&h, b->head.p, b->head.n);
	put_tag(&h, 9, WT_LEN);
	put_varint(&h, big_raw_bytes(b));
	wr_buf(&h);
	wr(w, (size_t)n * sizeof *w);
	free(h.p);
	if (w != a)
		free(w);
	free(a);
}

int
main(int argc, char **argv)
{
	int tiny = argc == 3 && strcmp(argv[1], "tiny") == 0;
	fused = argc == 11 && strcmp(argv[10], "fused") == 0;
	if (!tiny && argc != 10 && !fused) {
		fprintf(stderr, "usage: bench_onnx IN.safetensors OUT.onnx DIM LAYERS HEADS KV_HEADS FFN VOCAB N [fused]\n"
		                "       bench_onnx tiny OUT.onnx\n");
		return 2;
	}
	StFile *st = NULL;
	if (tiny) {
		tiny_graph();
	} else {
		Shape s = { atoll(argv[3]), atoll(argv[4]), atoll(argv[5]), atoll(argv[6]), atoll(argv[7]),
			    atoll(argv[8]), atoll(argv[9]), 0, 0, 0 };
		if (s.dim < 2 || s.layers < 1 || s.heads < 1 || s.kvh < 1 || s.dim % s.heads ||
		    s.heads % s.kvh || (s.dim / s.heads) % 2 || s.ffn < 1 || s.vocab < 1 || s.n < 1)
			die("the shape is not that of a Llama (dim a multiple of heads, heads of kv_heads, even head size)");
		s.hd = s.dim / s.heads;
		s.kvd = s.kvh * s.hd;
		s.group = s.heads / s.kvh;
		char err[256];
		st = st_open(argv[1], err, sizeof err);
		if (!st)
			die(err);
		llama_graph(&s);
	}
	put_str(&graph, 2, tiny ? "tiny" : "llama_prefill");
	uint64_t glen = graph.n;
	for (int i = 0; i < nbig; i++)
		glen += 1 + varint_len(big_len(&bigs[i])) + big_len(&bigs[i]);

	/* ModelProto: ir_version 1, opset_import 8 (domain 1, version 2), producer_name 2,
	 * graph 7 */
	Buf m = { 0 }, opset = { 0 };
	put_int(&m, 1, 8);
	put_str(&opset, 1, "");
	put_int(&opset, 2, 17);
	put_msg(&m, 8, &opset);
	if (fused) {
		put_str(&opset, 1, "com.microsoft");
		put_int(&opset, 2, 1);
		put_msg(&m, 8, &opset);
	}
	put_str(&m, 2, "elide bench_onnx");
	put_tag(&m, 7, WT_LEN);
	put_varint(&m, glen);
	out = fopen(argv[2], "wb");
	if (!out) {
		perror(argv[2]);
		return 1;
	}
	wr_buf(&m);
	wr_buf(&graph);
	for (int i = 0; i < nbig; i++)
		write_big(st, &bigs[i]);
	if (fclose(out) != 0) {
		perror(argv[2]);
		return 1;
	}
	if (st)
		st_close(st);
	for (int i = 0; i < nbig; i++)
		free(bigs[i].head.p);
	for (int i = 0; i < nnames; i++)
		free(names[i]);
	free(bigs);
	free(names);
	free(graph.p);
	free(m.p);
	return 0;
}
