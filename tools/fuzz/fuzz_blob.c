/* fuzz_blob.c - libFuzzer target for the runtime's weight-blob check: any bytes, at
 * any size, must give a status code and never a read outside the blob.  The input is
 * copied into exactly-sized 64-byte-aligned memory (so ASan sees any overread), and
 * checked against the model hash its header claims (so inputs get past that test)
 * and against another.  When the first input byte is odd, the header's checksum
 * field is first set to the checksum of the bytes its header size points at, so that
 * the tests after the checksum are reached too.  Oracle (a violation traps): on ELIDE_OK the payload lies inside the
 * blob, 64-byte aligned. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/elide_rt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check(const uint8_t *blob, size_t size, uint64_t hash)
{
	const void *payload = NULL;
	size_t psize = 0;
	if (elide_blob_check(blob, size, hash, ELIDE_BLOB_ANY_SIZE, &payload, &psize) != ELIDE_OK)
		return;
	const uint8_t *p = payload;
	if (p < blob || p + psize > blob + size || ((uintptr_t)p & 63) != 0)
		__builtin_trap();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t cap = (size + 63) & ~(size_t)63;
	uint8_t *blob = aligned_alloc(64, cap ? cap : 64);
	if (!blob)
		return 0;
	memcpy(blob, data, size);
	uint64_t hash = 0;
	uint32_t hsize = 0;
	if (size >= 64)
		memcpy(&hsize, blob + 12, sizeof hsize);
	if (size >= 64 && (data[0] & 1) && hsize <= size) {
		/* the checksum of what the (fuzzed) header size says the payload is */
		uint64_t sum = elide_checksum(blob + hsize, size - hsize);
		memcpy(blob + 32, &sum, sizeof sum);
	}
	if (size >= 24)
		memcpy(&hash, blob + 16, sizeof hash);
	check(blob, size, hash);
	check(blob, size, hash ^ 1);
	free(blob);
	return 0;
}
