/* gguf.c - the benchmark's Llama weights (a safetensors file with Hugging Face
 * names, bench_mkweights) as an F32 GGUF file that llama.cpp loads, so that the peer
 * runs on the same weights as elide.  GGUF version 3: header, metadata (architecture
 * llama, the shape, RMSNorm epsilon, rope base, and a placeholder SentencePiece
 * vocabulary of the right size: <unk>, <s>, </s>, the 256 byte tokens, then <tN>),
 * tensor infos, then the tensors, 32-byte aligned.  q_proj and k_proj are permuted
 * from the rotate_half layout to llama.cpp's interleaved rope pairs, as llama.cpp's
 * converter does, so both compute the same model.
 * Usage: bench_gguf IN.safetensors OUT.gguf DIM LAYERS HEADS KV_HEADS FFN VOCAB CTX */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ir/ir.h"

enum { G_U32 = 4, G_I32 = 5, G_F32 = 6, G_STR = 8, G_ARR = 9 };

static FILE *out;

static void
w(const void *p, size_t n)
{
	if (fwrite(p, 1, n, out) != n) {
		perror("bench_gguf: write");
		exit(1);
	}
}

static void w32(uint32_t v) { w(&v, 4); }
static void w64(uint64_t v) { w(&v, 8); }
static void wstr(const char *s) { w64(strlen(s)); w(s, strlen(s)); }
static void kv_u32(const char *k, uint32_t v) { wstr(k); w32(G_U32); w32(v); }
static void kv_f32(const char *k, float v) { wstr(k); w32(G_F32); w(&v, 4); }
static void kv_str(const char *k, const char *v) { wstr(k); w32(G_STR); wstr(v); }

typedef struct Tensor {
	char gname[96];
	const char *hf;     /* safetensors name */
	int64_t rows, cols; /* [rows, cols] row-major; cols 0: a vector of rows */
	int permute_heads;  /* > 0: rope permutation over this many heads */
} Tensor;

static void
token_name(int i, char *buf, size_t n)
{
	if (i == 0)
		snprintf(buf, n, "<unk>");
	else if (i == 1)
		snprintf(buf, n, "<s>");
	else if (i == 2)
		snprintf(buf, n, "</s>");
	else if (i < 3 + 256)
		snprintf(buf, n, "<0x%02X>", i - 3);
	else
		snprintf(buf, n, "<t%d>", i);
}

/* HF rows of head h: [first half pairs..., second half...] -> interleaved pairs:
 * out row (h, i, j) = in row (h, j, i) for the view [heads, 2, hd/2]. */
static void
permute_rows(const float *src, float *dst, int64_t heads, int64_t rows, int64_t cols)
{
	int64_t hd = rows / heads, half = hd / 2;
	for (int64_t h = 0; h < heads; h++)
		for (int64_t a = 0; a < 2; a++)
			for (int64_t b = 0; b < half; b++) {
				int64_t from = h * hd + a * half + b, to = h * hd + b * 2 + a;
				memcpy(dst + to * cols, src + from * cols, (size_t)cols * sizeof *dst);
			}
}

int
main(int argc, char **argv)
{
	if (argc != 10) {
		fprintf(stderr, "usage: bench_gguf IN.safetensors OUT.gguf DIM LAYERS HEADS KV_HEADS FFN VOCAB CTX\n");
		return 2;
	}
	int dim = atoi(argv[3]), layers = atoi(argv[4]), heads = atoi(argv[5]), kvh = atoi(argv[6]);
	int ffn = atoi(argv[7]), vocab = atoi(argv[8]), ctx = atoi(argv[9]);
	int kvd = kvh * (dim / heads);
	char err[256];
	StFile *st = st_open(argv[1], err, sizeof err);
	if (!st) {
		fprintf(stderr, "bench_gguf: %s\n", err);
		return 1;
	}
	int nt = 3 + 9 * layers;
	Tensor *t = calloc((size_t)nt, sizeof *t);
	char (*hf)[96] = calloc((size_t)nt, sizeof *hf);
	int k = 0;
#define ADD(G, H, R, C, P)                                                                                           \
	do {                                                                                                             \
		snprintf(t[k].gname, sizeof t[k].gname, "%s", G);                                                         \
		snprintf(hf[k], sizeof hf[k], "%s", H);                                                                    \
		t[k].hf = hf[k];                                                                                            \
		t[k].rows = R;                                                                                              \
		t[k].cols = C;                                                                                              \
		t[k].permute_heads = P;                                                                                     \
		k++;                                                                                                        \
	} while (0)
	ADD("token_embd.weight", "model.embed_tokens.weight", vocab, dim, 0);
	for (int l = 0; l < layers; l++) {
		char g[96], h[96];
#define LAYER(GN, HN, R, C, P)                                                                                       \
	snprintf(g, sizeof g, "blk.%d." GN, l);                                                                           \
	snprintf(h, sizeof h, "model.layers.%d." HN, l);                                                                  \
	ADD(g, h, R, C, P)
		LAYER("attn_norm.weight", "input_layernorm.weight", dim, 0, 0);
		LAYER("attn_q.weight", "self_attn.q_proj.weight", dim, dim, heads);
		LAYER("attn_k.weight", "self_attn.k_proj.weight", kvd, dim, kvh);
		LAYER("attn_v.weight", "self_attn.v_proj.weight", kvd, dim, 0);
		LAYER("attn_output.weight", "self_attn.o_proj.weight", dim, dim, 0);
		LAYER("ffn_norm.weight", "post_attention_layernorm.weight", dim, 0, 0);
		LAYER("ffn_gate.weight", "mlp.gate_proj.weight", ffn, dim, 0);
		LAYER("ffn_up.weight", "mlp.up_proj.weight", ffn, dim, 0);
		LAYER("ffn_down.weight", "mlp.down_proj.weight", dim, ffn, 0);
	}
	ADD("output_norm.weight", "model.norm.weight", dim, 0, 0);
	ADD("output.weight", "lm_head.weight", vocab, dim, 0);

	out = fopen(argv[2], "wb");
	if (!out) {
		perror(argv[2]);
		return 1;
	}
	w("GGUF", 4);
	w32(3);
	w64((uint64_t)nt);
	w64(19); /* the key-value pairs below */
	kv_str("general.architecture", "llama");
	kv_str("general.name", "elide-bench");
	kv_u32("general.file_type", 0);
	kv_u32("llama.context_length", (uint32_t)ctx);
	kv_u32("llama.embedding_length", (uint32_t)dim);
	kv_u32("llama.block_count", (uint32_t)layers);
	kv_u32("llama.feed_forward_length", (uint32_t)ffn);
	kv_u32("llama.rope.dimension_count", (uint32_t)(dim / heads));
	kv_u32("llama.attention.head_count", (uint32_t)heads);
	kv_u32("llama.attention.head_count_kv", (uint32_t)kvh);
	kv_f32("llama.attention.layer_norm_rms_epsilon", 1e-5f);
	kv_f32("llama.rope.freq_base", 10000.0f);
	kv_str("tokenizer.ggml.model", "llama");
	wstr("tokenizer.ggml.tokens");
	w32(G_ARR);
	w32(G_STR);
	w64((uint64_t)vocab);
	for (int i = 0; i < vocab; i++) {
		char b[32];
		token_name(i, b, sizeof b);
		wstr(b);
	}
	wstr("tokenizer.ggml.scores");
	w32(G_ARR);
	w32(G_F32);
	w64((uint64_t)vocab);
	for (int i = 0; i < vocab; i++) {
		float s = -(float)i;
		w(&s, 4);
	}
	wstr("tokenizer.ggml.token_type");
	w32(G_ARR);
	w32(G_I32);
	w64((uint64_t)vocab);
	for (int i = 0; i < vocab; i++)
		w32(i == 0 ? 2u : i < 3 ? 3u : i < 3 + 256 ? 6u : 1u);
	kv_u32("tokenizer.ggml.bos_token_id", 1);
	kv_u32("tokenizer.ggml.eos_token_id", 2);
	kv_u32("tokenizer.ggml.unknown_token_id", 0);
	/* tensor infos */
	uint64_t off = 0;
	for (int i = 0; i < nt; i++) {
		wstr(t[i].gname);
		if (t[i].cols) {
			w32(2);
			w64((uint64_t)t[i].cols);
			w64((uint64_t)t[i].rows);
		} else {
			w32(1);
			w64((uint64_t)t[i].rows);
		}
		w32(0); /* F32 */
		w64(off);
		uint64_t n = (uint64_t)t[i].rows * (uint64_t)(t[i].cols ? t[i].cols : 1) * 4;
		off += (n + 31) & ~(uint64_t)31;
	}
	long pos = ftell(out);
	static const char zero[32];
	w(zero, (size_t)((32 - pos % 32) % 32));
	for (int i = 0; i < nt; i++) {
		const StTensor *s = st_find(st, t[i].hf);
		int64_t n = t[i].rows * (t[i].cols ? t[i].cols : 1);
		int64_t sn = 1;
		for (int d = 0; s && d < s->rank; d++)
			sn *= s->shape[d];
		if (!s || sn != n) {
			fprintf(stderr, "bench_gguf: tensor '%s' missing or of another size\n", t[i].hf);
			return 1;
		}
		float *a = malloc((size_t)n * sizeof *a), *b = malloc((size_t)n * sizeof *b);
		if (!a || !b || !st_read_f32(st, s, a, err, sizeof err)) {
			fprintf(stderr, "bench_gguf: %s\n", a && b ? err : "out of memory");
			return 1;
		}
		if (t[i].permute_heads)
			permute_rows(a, b, t[i].permute_heads, t[i].rows, t[i].cols);
		else
			memcpy(b, a, (size_t)n * sizeof *a);
		w(b, (size_t)n * 4);
		w(zero, (size_t)((32 - (n * 4) % 32) % 32));
		free(a);
		free(b);
	}
	if (fclose(out) != 0) {
		perror(argv[2]);
		return 1;
	}
	st_close(st);
	free(t);
	free(hf);
	return 0;
}
