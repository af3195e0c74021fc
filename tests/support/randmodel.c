/* randmodel.c - seeded random Llama models for tests: weights in safetensors with the
 * Hugging Face names, the matching .elide source text, and a generic safetensors
 * writer.  Weights are uniform in [-1/sqrt(fan_in), 1/sqrt(fan_in)) so activations
 * stay of order one through the layers; norm weights are 1 +- 0.1. */
#include "ir/ir.h"
#include "tests/support/randmodel.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

RmConfig
rm_default_config(void)
{
	return (RmConfig){ .dim = 64, .layers = 2, .heads = 4, .kv_heads = 2, .ffn = 172,
	                   .vocab = 256, .ctx = 64, .seed = 1 };
}

uint64_t
rm_rng_next(RmRng *r)
{
	uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

float
rm_rng_uniform(RmRng *r, float lo, float hi)
{
	double u = (double)(rm_rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
	return (float)(lo + (hi - lo) * u);
}

/* ---- f32 -> f16 / bf16, round to nearest even ---- */

uint16_t
rm_f32_to_bf16(float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	if ((u & 0x7fffffffu) > 0x7f800000u) /* NaN: keep it quiet */
		return (uint16_t)((u >> 16) | 0x40);
	u += 0x7fffu + ((u >> 16) & 1);
	return (uint16_t)(u >> 16);
}

uint16_t
rm_f32_to_f16(float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	uint16_t sign = (uint16_t)((u >> 16) & 0x8000);
	uint32_t a = u & 0x7fffffffu;
	if (a > 0x7f800000u)
		return sign | 0x7e00;
	if (a >= 0x477ff000u) /* rounds to >= 65520: infinity */
		return sign | 0x7c00;
	if (a < 0x38800000u) { /* below the smallest normal half: subnormal or zero */
		float af;
		memcpy(&af, &a, 4);
		/* units of 2^-24, round half to even */
		double q = (double)af * 16777216.0;
		double r = nearbyint(q);
		return sign | (uint16_t)r;
	}
	uint32_t mant = a & 0x7fffffu;
	uint32_t exp = (a >> 23) - 127 + 15;
	uint32_t h = (exp << 10) | (mant >> 13);
	uint32_t rest = mant & 0x1fffu;
	if (rest > 0x1000u || (rest == 0x1000u && (h & 1)))
		h++;
	return sign | (uint16_t)h;
}

/* ---- generic writer ---- */

static size_t
dtype_bytes(RmDType d)
{
	return d == RM_F16 || d == RM_BF16 ? 2 : 4;
}

static const char *
dtype_str(RmDType d)
{
	switch (d) {
	case RM_F16: return "F16";
	case RM_BF16: return "BF16";
	case RM_I32: return "I32";
	default: return "F32";
	}
}

static int64_t
numel(const RmTensor *t)
{
	int64_t n = 1;
	for (int i = 0; i < t->rank; i++)
		n *= t->shape[i];
	return n;
}

uint8_t *
rm_st_build(const RmTensor *t, int n, size_t *size)
{
	StrBuf h = { 0 };
	size_t off = 0;
	sb_printf(&h, "{\"__metadata__\":{\"format\":\"pt\"}");
	for (int i = 0; i < n; i++) {
		size_t bytes = (size_t)numel(&t[i]) * dtype_bytes(t[i].dtype);
		sb_printf(&h, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[", t[i].name, dtype_str(t[i].dtype));
		for (int d = 0; d < t[i].rank; d++)
			sb_printf(&h, "%s%lld", d ? "," : "", (long long)t[i].shape[d]);
		sb_printf(&h, "],\"data_offsets\":[%zu,%zu]}", off, off + bytes);
		off += bytes;
	}
	sb_printf(&h, "}");
	while (h.n % 8)
		sb_printf(&h, " ");
	*size = 8 + h.n + off;
	uint8_t *out = calloc(1, *size ? *size : 1);
	if (!out)
		abort();
	uint64_t hl = h.n;
	for (int i = 0; i < 8; i++)
		out[i] = (uint8_t)(hl >> (8 * i));
	memcpy(out + 8, h.s, h.n);
	uint8_t *p = out + 8 + h.n;
	for (int i = 0; i < n; i++) {
		int64_t k = numel(&t[i]);
		for (int64_t j = 0; j < k; j++) {
			float v = t[i].data ? t[i].data[j] : 0.0f;
			uint32_t u;
			switch (t[i].dtype) {
			case RM_F16:
			case RM_BF16: {
				uint16_t s = t[i].dtype == RM_F16 ? rm_f32_to_f16(v) : rm_f32_to_bf16(v);
				*p++ = (uint8_t)s;
				*p++ = (uint8_t)(s >> 8);
				continue;
			}
			case RM_I32: {
				int32_t iv = (int32_t)v;
				memcpy(&u, &iv, 4);
				break;
			}
			default:
				memcpy(&u, &v, 4);
			}
			for (int b = 0; b < 4; b++)
				*p++ = (uint8_t)(u >> (8 * b));
		}
	}
	free(h.s);
	return out;
}

bool
rm_st_write(const RmTensor *t, int n, const char *path)
{
	size_t size;
	uint8_t *bytes = rm_st_build(t, n, &size);
	FILE *f = fopen(path, "wb");
	bool ok = f && fwrite(bytes, 1, size, f) == size;
	if (f && fclose(f) != 0)
		ok = false;
	if (!ok)
		fprintf(stderr, "randmodel: cannot write '%s'\n", path);
	free(bytes);
	return ok;
}

/* ---- the random Llama ---- */

typedef struct Model {
	RmTensor *t;
	int n, cap;
	RmRng rng;
} Model;

static float *
add(Model *m, const char *name, int rows, int cols, int kind)
{
	if (m->n == m->cap) {
		m->cap = m->cap ? 2 * m->cap : 16;
		m->t = realloc(m->t, (size_t)m->cap * sizeof *m->t);
		if (!m->t)
			abort();
	}
	size_t k = (size_t)rows * (size_t)(cols ? cols : 1);
	float *d = malloc(k * sizeof *d);
	if (!d)
		abort();
	float s = kind == 1 ? 0.1f : kind == 2 ? 1.0f : 1.0f / sqrtf((float)cols);
	for (size_t i = 0; i < k; i++)
		d[i] = (kind == 1 ? 1.0f : 0.0f) + rm_rng_uniform(&m->rng, -s, s);
	RmTensor *t = &m->t[m->n++];
	*t = (RmTensor){ .name = strdup(name), .dtype = RM_F32, .rank = cols ? 2 : 1,
	                 .shape = { rows, cols }, .data = d };
	return d;
}

/* kind: 0 linear weight [rows, cols], 1 norm weight [rows], 2 embedding */
static float *
addf(Model *m, int rows, int cols, int kind, const char *fmt, int l)
{
	char name[160];
	snprintf(name, sizeof name, fmt, l);
	return add(m, name, rows, cols, kind);
}

static void
zero_rows(float *w, int cols, int r0, int nr)
{
	memset(w + (size_t)r0 * cols, 0, (size_t)nr * cols * sizeof *w);
}

static void
zero_cols(float *w, int rows, int cols, int c0, int nc)
{
	for (int r = 0; r < rows; r++)
		memset(w + (size_t)r * cols + c0, 0, (size_t)nc * sizeof *w);
}

bool
rm_write_model(const RmConfig *c, const char *path)
{
	int hd = c->dim / c->heads, kvd = c->kv_heads * hd, group = c->heads / c->kv_heads;
	Model m = { .rng = { c->seed * 0x2545f4914f6cdd1dull + 1 } };
	add(&m, "model.embed_tokens.weight", c->vocab, c->dim, 2);
	for (int l = 0; l < c->layers; l++) {
		addf(&m, c->dim, 0, 1, "model.layers.%d.input_layernorm.weight", l);
		float *wq = addf(&m, c->dim, c->dim, 0, "model.layers.%d.self_attn.q_proj.weight", l);
		float *wk = addf(&m, kvd, c->dim, 0, "model.layers.%d.self_attn.k_proj.weight", l);
		float *wv = addf(&m, kvd, c->dim, 0, "model.layers.%d.self_attn.v_proj.weight", l);
		float *wo = addf(&m, c->dim, c->dim, 0, "model.layers.%d.self_attn.o_proj.weight", l);
		addf(&m, c->dim, 0, 1, "model.layers.%d.post_attention_layernorm.weight", l);
		float *w1 = addf(&m, c->ffn, c->dim, 0, "model.layers.%d.mlp.gate_proj.weight", l);
		float *w3 = addf(&m, c->ffn, c->dim, 0, "model.layers.%d.mlp.up_proj.weight", l);
		float *w2 = addf(&m, c->dim, c->ffn, 0, "model.layers.%d.mlp.down_proj.weight", l);
		for (int j = 0; c->zero_ffn && j < c->ffn; j++)
			if (c->zero_ffn[l * c->ffn + j]) {
				zero_rows(w1, c->dim, j, 1);
				zero_rows(w3, c->dim, j, 1);
				zero_cols(w2, c->dim, c->ffn, j, 1);
			}
		for (int h = 0; c->zero_head && h < c->heads; h++)
			if (c->zero_head[l * c->heads + h]) {
				zero_rows(wq, c->dim, h * hd, hd);
				zero_cols(wo, c->dim, c->dim, h * hd, hd);
			}
		for (int g = 0; c->zero_kv && g < c->kv_heads; g++)
			if (c->zero_kv[l * c->kv_heads + g]) {
				zero_rows(wk, c->dim, g * hd, hd);
				zero_rows(wv, c->dim, g * hd, hd);
				zero_rows(wq, c->dim, g * group * hd, group * hd);
				zero_cols(wo, c->dim, c->dim, g * group * hd, group * hd);
			}
		if (c->zero_attn && c->zero_attn[l])
			memset(wo, 0, (size_t)c->dim * c->dim * sizeof *wo);
		if (c->zero_mlp && c->zero_mlp[l])
			memset(w2, 0, (size_t)c->dim * c->ffn * sizeof *w2);
		if (c->zero_layer && c->zero_layer[l]) {
			memset(wo, 0, (size_t)c->dim * c->dim * sizeof *wo);
			memset(w2, 0, (size_t)c->dim * c->ffn * sizeof *w2);
		}
	}
	add(&m, "model.norm.weight", c->dim, 0, 1);
	add(&m, "lm_head.weight", c->vocab, c->dim, 0);
	bool ok = rm_st_write(m.t, m.n, path);
	for (int i = 0; i < m.n; i++) {
		free((void *)m.t[i].name);
		free((void *)m.t[i].data);
	}
	free(m.t);
	return ok;
}

/* The layer body shared by both entries; `x` holds the residual stream, `P` the
 * position argument. */
static void
layer_body(StrBuf *b)
{
	sb_printf(b,
	           "    for l in 0..layers {\n"
	           "      h = rmsnorm(x, attn_norm[l], eps = 1e-5);\n"
	           "      q = rope(linear(h, wq[l]), pos, heads, theta = 10000.0, style = half);\n"
	           "      k = rope(linear(h, wk[l]), pos, kv_heads, theta = 10000.0, style = half);\n"
	           "      v = linear(h, wv[l]);\n"
	           "      x = x + linear(attention(q, k, v, kv[l], pos, heads, kv_heads), wo[l]);\n"
	           "      h = rmsnorm(x, ffn_norm[l], eps = 1e-5);\n"
	           "      x = x + linear(silu(linear(h, w1[l])) * linear(h, w3[l]), w2[l]);\n"
	           "    }\n");
}

char *
rm_elide_source(const RmConfig *c, const char *name)
{
	StrBuf b = { 0 };
	sb_printf(&b,
	           "# %s: random Llama test model (tests/support/randmodel.c, seed %llu)\n"
	           "model %s {\n"
	           "  const dim = %d, layers = %d, heads = %d, kv_heads = %d, ffn = %d, vocab = %d, ctx = %d;\n"
	           "  const head_dim = %d, kv_dim = %d;\n"
	           "\n"
	           "  weights safetensors {\n"
	           "    emb: f32[vocab, dim] = \"model.embed_tokens.weight\";\n"
	           "    for l in 0..layers {\n"
	           "      attn_norm[l]: f32[dim] = \"model.layers.{l}.input_layernorm.weight\";\n"
	           "      wq[l]: f32[dim, dim] = \"model.layers.{l}.self_attn.q_proj.weight\";\n"
	           "      wk[l]: f32[kv_dim, dim] = \"model.layers.{l}.self_attn.k_proj.weight\";\n"
	           "      wv[l]: f32[kv_dim, dim] = \"model.layers.{l}.self_attn.v_proj.weight\";\n"
	           "      wo[l]: f32[dim, dim] = \"model.layers.{l}.self_attn.o_proj.weight\";\n"
	           "      ffn_norm[l]: f32[dim] = \"model.layers.{l}.post_attention_layernorm.weight\";\n"
	           "      w1[l]: f32[ffn, dim] = \"model.layers.{l}.mlp.gate_proj.weight\";\n"
	           "      w3[l]: f32[ffn, dim] = \"model.layers.{l}.mlp.up_proj.weight\";\n"
	           "      w2[l]: f32[dim, ffn] = \"model.layers.{l}.mlp.down_proj.weight\";\n"
	           "    }\n"
	           "    norm: f32[dim] = \"model.norm.weight\";\n"
	           "    lm_head: f32[vocab, dim] = \"lm_head.weight\";\n"
	           "  }\n"
	           "\n"
	           "  state kv[l in 0..layers]: kvcache(ctx, kv_heads, head_dim);\n"
	           "\n"
	           "  fn head(x: f32[dim]) -> f32[vocab] {\n"
	           "    return linear(rmsnorm(x, norm, eps = 1e-5), lm_head);\n"
	           "  }\n"
	           "\n"
	           "  entry step(token: i32, pos: i32) -> f32[vocab] {\n"
	           "    x = embed(emb, token);\n",
	           name, (unsigned long long)c->seed, name, c->dim, c->layers, c->heads, c->kv_heads,
	           c->ffn, c->vocab, c->ctx, c->dim / c->heads, c->kv_heads * (c->dim / c->heads));
	layer_body(&b);
	sb_printf(&b,
	           "    return head(x);\n"
	           "  }\n"
	           "\n"
	           "  entry prefill(tokens: i32[<=ctx], pos: i32) -> f32[vocab] {\n"
	           "    x = embed(emb, tokens);\n");
	layer_body(&b);
	sb_printf(&b,
	           "    return head(row(x, -1));\n"
	           "  }\n"
	           "}\n");
	return b.s;
}
