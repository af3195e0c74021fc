/* fuzz_gguf.c - libFuzzer target for the GGUF reader: any bytes must give a
 * validated file or a message, never a crash, a leak or a hang.  Oracles (a
 * violation traps):
 *   1. gguf_open_mem returns a file exactly when it leaves err empty;
 *   2. every tensor of an accepted file lies inside the data section, and converting
 *      it to f32 (when small enough to do quickly) succeeds exactly for the types
 *      the reader converts. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ir/ir.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[512] = "";
	GgufFile *f = gguf_open_mem(data, size, err, sizeof err);
	if ((f != NULL) == (err[0] != '\0'))
		__builtin_trap();
	if (!f)
		return 0;
	for (uint32_t i = 0; i < f->ntensors; i++) {
		const GgufTensor *t = &f->tensors[i];
		if (t->offset > f->size - f->data_off || t->nbytes > f->size - f->data_off - t->offset)
			__builtin_trap();
		if (t->numel > (1 << 16))
			continue;
		bool known = t->type == GGML_F32 || t->type == GGML_F16 || t->type == GGML_BF16 || t->type == GGML_Q8_0 ||
		             t->type == GGML_Q4_0;
		float *dst = malloc((size_t)t->numel * sizeof *dst);
		if (gguf_read_f32(f, t, dst, err, sizeof err) != known)
			__builtin_trap();
		free(dst);
	}
	gguf_close(f);
	return 0;
}
