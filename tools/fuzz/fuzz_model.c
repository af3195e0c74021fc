/* fuzz_model.c - libFuzzer target for weight blobs as a product loads them: through
 * the generated code of a compiled model (the tiny Llama of the prune-structured
 * tests, compiled when this target is built) and the runtime.  The input is copied
 * to 64-aligned memory followed by an inaccessible guard page, loaded with
 * tiny_load_weights_mem, and when it is accepted a decode step and a prefill run:
 * a blob that passes the checks but does not fit the model would read past the end
 * of its payload into the guard page and crash.  Loading from a file
 * (tiny_load_weights) is exercised on a copy of every 16th input. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "tiny.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static tiny_ctx *ctx;
static char path[64];

static void
run_steps(void)
{
	float out[TINY_VOCAB];
	int32_t toks[3] = { 1, 2, 3 };
	if (tiny_step(ctx, 1, 0, out) != TINY_OK)
		__builtin_trap(); /* loaded weights, valid arguments */
	if (tiny_prefill(ctx, toks, 3, 1, out) != TINY_OK)
		__builtin_trap();
	tiny_reset(ctx);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static unsigned calls;
	if (!ctx) {
		ctx = tiny_create();
		snprintf(path, sizeof path, "/tmp/fuzz_model.%ld.weights", (long)getpid());
	}
	if (!ctx || size > (1u << 20))
		return 0;
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	size_t off = (page - (size & (page - 1))) & (page - 1) & ~(size_t)63; /* end near the guard */
	size_t span = (off + size + page - 1) / page * page;
	uint8_t *region = mmap(NULL, span + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (region == MAP_FAILED)
		return 0;
	mprotect(region + span, page, PROT_NONE);
	uint8_t *blob = region + off;
	memcpy(blob, data, size);
	if (tiny_load_weights_mem(ctx, blob, size) == TINY_OK)
		run_steps();
	if (++calls % 16 == 0) {
		FILE *f = fopen(path, "wb");
		if (f) {
			fwrite(data, 1, size, f);
			fclose(f);
			if (tiny_load_weights(ctx, path) == TINY_OK)
				run_steps();
		}
	}
	/* the context must not keep pointing into memory about to go away */
	tiny_destroy(ctx);
	ctx = tiny_create();
	munmap(region, span + page);
	return 0;
}
