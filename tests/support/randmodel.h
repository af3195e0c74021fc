/* randmodel.h - seeded random Llama-style models for tests (no committed model files).
 * rm_write_model() writes the weights of a small Llama (Hugging Face tensor names, as
 * examples/llama/llama.elide binds them) to a safetensors file; rm_elide_source()
 * returns the matching .elide model text for the same config.  Options zero chosen
 * FFN neurons, attention heads, KV groups or whole layers so that tests can check
 * that pruning zero units changes nothing.  Also a small generic safetensors writer
 * (rm_st_*) for tests that need hand-made files. */
#ifndef ELIDE_RANDMODEL_H
#define ELIDE_RANDMODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct RmConfig {
	int dim;        /* model width */
	int layers;     /* decoder layers */
	int heads;      /* query heads; head_dim = dim / heads */
	int kv_heads;   /* key/value heads (GQA groups); divides heads */
	int ffn;        /* hidden width of the SwiGLU MLP */
	int vocab;      /* vocabulary size */
	int ctx;        /* context length (KV cache positions, prefill bound) */
	uint64_t seed;  /* RNG seed: same seed, same weights */
	/* Units to zero (NULL = none).  Zeroing makes a unit contribute exactly nothing to
	 * the residual stream, so removing it must not change any output. */
	const bool *zero_ffn;   /* [layers * ffn]: rows of gate/up, columns of down */
	const bool *zero_head;  /* [layers * heads]: rows of q_proj, columns of o_proj */
	const bool *zero_kv;    /* [layers * kv_heads]: rows of k/v_proj and every q head of
	                           the group (q rows, o columns) */
	const bool *zero_layer; /* [layers]: o_proj and down_proj entirely */
	const bool *zero_attn;  /* [layers]: o_proj entirely (the attention block adds nothing) */
	const bool *zero_mlp;   /* [layers]: down_proj entirely (the FFN block adds nothing) */
} RmConfig;

/* A small default: dim 64, 2 layers, 4 heads, 2 kv heads, ffn 172, vocab 256,
 * ctx 64, seed 1. */
RmConfig rm_default_config(void);

/* Writes the random model to `path`; false (and a message on stderr) on I/O error. */
bool rm_write_model(const RmConfig *c, const char *path);
/* The .elide source for the config (model name `name`, e.g. "llama"), with entries
 * `step(token, pos)` and `prefill(tokens, pos)`; malloc'ed, caller frees. */
char *rm_elide_source(const RmConfig *c, const char *name);

/* The module's IR built directly with ir_emit (tests/support/randmodel_ir.c), without
 * the front end: params named emb, attn_norm.L, wq.L, wk.L, wv.L, wo.L, ffn_norm.L,
 * w1.L (gate), w3.L (up), w2.L (down), norm, lm_head with the HF sources; states
 * kv.L; entries step and prefill as in rm_elide_source().  Params are not loaded. */
struct Module *rm_build_module(const RmConfig *c, const char *name);

/* Writes a safetensors file with a tensor for every param of m, named by the param's
 * source and of its shape, uniform in [-0.5, 0.5) from seed (f32).  False when the
 * file cannot be written. */
bool rm_write_params(const struct Module *m, uint64_t seed, const char *path);

/* Deterministic random numbers (splitmix64) for tests. */
typedef struct RmRng {
	uint64_t s;
} RmRng;
uint64_t rm_rng_next(RmRng *r);
float rm_rng_uniform(RmRng *r, float lo, float hi); /* [lo, hi) */

/* ---- generic safetensors writer ---- */
typedef enum RmDType { RM_F32, RM_F16, RM_BF16, RM_I32 } RmDType;
typedef struct RmTensor {
	const char *name;
	RmDType dtype;
	int rank;
	int64_t shape[4];
	const float *data;     /* numel values, converted to dtype on write (NULL: zeros) */
} RmTensor;
/* Serialises tensors into a malloc'ed buffer (*size bytes); the header is padded to
 * a multiple of 8 as the format recommends. */
uint8_t *rm_st_build(const RmTensor *t, int n, size_t *size);
bool rm_st_write(const RmTensor *t, int n, const char *path);
uint16_t rm_f32_to_f16(float f);
uint16_t rm_f32_to_bf16(float f);

#endif
