/* prefill.c - elide's side of the ONNX Runtime prefill comparison (bench/ortpeer.sh):
 * the compiled Llama at one shape, built by cc against the generated llama.h and
 * driven line by line over stdin by bench/ort.js, so that its prefill runs alternate
 * with ONNX Runtime's in one sequence.  It first prints the prompt, N tokens drawn as
 * bench/model.c draws them ("tokens T0 T1 ..."), then answers each command on one line:
 *   logits TH FILE   one prefill at TH threads; the last position's logits into FILE
 *                    (VOCAB little-endian floats): "ok"
 *   run TH           one prefill at TH threads: its seconds
 *   quit
 * and "error MESSAGE" when a command fails.
 * Built with -DPAIR_CPU_TIME (bench/prefill_pair.sh), "run" answers the process CPU
 * time of the prefill instead of its wall time.
 * Usage: bench_prefill llama.weights N */
#include "bench/bench.h"
#include "llama.h"

#include <time.h>

/* The clock of a prefill: wall time, or the process CPU time. */
static double
clock_seconds(void)
{
#ifdef PAIR_CPU_TIME
	struct timespec t;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
#else
	return bench_seconds();
#endif
}

/* One prefill of the prompt at th threads from position 0; seconds, or < 0 with the
 * status printed as the answer.  The pool is made again only when th changes (a new
 * pool starts its threads, which a user does once, not per prompt). */
static double
prefill(llama_ctx *ctx, const int32_t *toks, int n, int th, float *logits)
{
	static int pool_threads = -1;
	int s = LLAMA_OK;
	if (th != pool_threads) {
		s = llama_set_threads(ctx, th);
		pool_threads = s == LLAMA_OK ? th : -1;
	}
	if (s == LLAMA_OK)
		s = llama_reset(ctx);
	double t0 = clock_seconds();
	if (s == LLAMA_OK)
		s = llama_prefill(ctx, toks, n, 0, logits);
	double dt = clock_seconds() - t0;
	if (s != LLAMA_OK) {
		printf("error prefill at %d threads failed with status %d\n", th, s);
		return -1;
	}
	return dt;
}

int
main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: bench_prefill llama.weights N\n");
		return 2;
	}
	int n = atoi(argv[2]);
	if (n < 1 || n > LLAMA_CTX) {
		fprintf(stderr, "bench_prefill: N must be in 1..%d\n", LLAMA_CTX);
		return 2;
	}
	llama_ctx *ctx = llama_create();
	float *logits = malloc(LLAMA_VOCAB * sizeof *logits);
	int32_t *toks = malloc((size_t)n * sizeof *toks);
	if (!ctx || !logits || !toks) {
		fprintf(stderr, "bench_prefill: out of memory\n");
		return 1;
	}
	int s = llama_load_weights(ctx, argv[1]);
	if (s != LLAMA_OK) {
		fprintf(stderr, "bench_prefill: loading %s failed with status %d\n", argv[1], s);
		return 1;
	}
	uint64_t rng = 17;
	printf("tokens");
	for (int i = 0; i < n; i++) {
		toks[i] = (int32_t)(elide_rng_next(&rng) % LLAMA_VOCAB);
		printf(" %d", toks[i]);
	}
	printf("\n");
	fflush(stdout);
	char line[1200], file[1024];
	int th;
	while (fgets(line, sizeof line, stdin)) {
		if (strncmp(line, "quit", 4) == 0)
			break;
		if (sscanf(line, "run %d", &th) == 1) {
			double dt = prefill(ctx, toks, n, th, logits);
			if (dt >= 0)
				printf("%.9f\n", dt);
		} else if (sscanf(line, "logits %d %1023s", &th, file) == 2) {
			if (prefill(ctx, toks, n, th, logits) >= 0) {
				FILE *f = fopen(file, "wb");
				if (f && fwrite(logits, sizeof *logits, LLAMA_VOCAB, f) == LLAMA_VOCAB && fclose(f) == 0)
					printf("ok\n");
				else
					printf("error cannot write %s\n", file);
			}
		} else {
			printf("error unknown command\n");
		}
		fflush(stdout);
	}
	llama_destroy(ctx);
	free(logits);
	free(toks);
	return 0;
}
