/* fuzz_safetensors.c - libFuzzer target for the weights-file reader: any bytes must
 * give a validated file or a message, never a crash, a leak or a hang.  Oracles (a
 * violation traps):
 *   1. st_open_mem returns a file exactly when it leaves err empty;
 *   2. every tensor of an accepted file lies inside the data section, and converting
 *      it to f32 (when small enough to do quickly) succeeds. */
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
	StFile *f = st_open_mem(data, size, err, sizeof err);
	if ((f != NULL) == (err[0] != '\0'))
		__builtin_trap();
	if (!f)
		return 0;
	for (uint32_t i = 0; i < f->ntensors; i++) {
		const StTensor *t = &f->tensors[i];
		if (t->begin > t->end || f->data_off + t->end > f->size)
			__builtin_trap();
		int64_t n = 1;
		for (int k = 0; k < t->rank; k++)
			n *= t->shape[k];
		if (t->dtype != DT_F32 && t->dtype != DT_F16 && t->dtype != DT_BF16)
			continue;
		if (n > (1 << 16))
			continue;
		float *dst = malloc((size_t)(n > 0 ? n : 1) * sizeof *dst);
		if (!st_read_f32(f, t, dst, err, sizeof err))
			__builtin_trap();
		free(dst);
	}
	st_close(f);
	return 0;
}
