/* mkweights.c - seeded random weights for the benchmarks, through the tests' helper
 * (tests/support/randmodel): a Llama with Hugging Face tensor names as
 * examples/llama/llama.elide binds them, or the two tensors of a one-linear kernel
 * model.  Usage:
 *   bench_mkweights llama OUT.safetensors DIM LAYERS HEADS KV_HEADS FFN VOCAB CTX SEED
 *   bench_mkweights linear OUT.safetensors N K VOCAB SEED   (tensors "emb" [VOCAB, K], "w" [N, K]) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/support/randmodel.h"

static float *
uniform(size_t n, float scale, RmRng *r)
{
	float *p = malloc(n * sizeof *p);
	if (!p) {
		fprintf(stderr, "bench_mkweights: out of memory\n");
		exit(1);
	}
	for (size_t i = 0; i < n; i++)
		p[i] = rm_rng_uniform(r, -scale, scale);
	return p;
}

int
main(int argc, char **argv)
{
	if (argc == 11 && strcmp(argv[1], "llama") == 0) {
		RmConfig c = rm_default_config();
		c.dim = atoi(argv[3]);
		c.layers = atoi(argv[4]);
		c.heads = atoi(argv[5]);
		c.kv_heads = atoi(argv[6]);
		c.ffn = atoi(argv[7]);
		c.vocab = atoi(argv[8]);
		c.ctx = atoi(argv[9]);
		c.seed = strtoull(argv[10], NULL, 10);
		return rm_write_model(&c, argv[2]) ? 0 : 1;
	}
	if (argc == 7 && strcmp(argv[1], "linear") == 0) {
		int n = atoi(argv[3]), k = atoi(argv[4]), v = atoi(argv[5]);
		RmRng r = { strtoull(argv[6], NULL, 10) };
		float *emb = uniform((size_t)v * k, 1.0f, &r), *w = uniform((size_t)n * k, 0.05f, &r);
		RmTensor t[2] = {
			{ .name = "emb", .dtype = RM_F32, .rank = 2, .shape = { v, k }, .data = emb },
			{ .name = "w", .dtype = RM_F32, .rank = 2, .shape = { n, k }, .data = w },
		};
		bool ok = rm_st_write(t, 2, argv[2]);
		free(emb);
		free(w);
		return ok ? 0 : 1;
	}
	fprintf(stderr, "usage: bench_mkweights llama OUT DIM LAYERS HEADS KV_HEADS FFN VOCAB CTX SEED\n"
	                "       bench_mkweights linear OUT N K VOCAB SEED\n");
	return 2;
}
