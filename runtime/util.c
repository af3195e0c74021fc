/* util.c - small size helpers (KV cache bytes, alignment) and a monotonic clock for
 * products and benchmarks that time their own calls. */
#include "runtime/elide_rt.h"

#include <time.h>

uint64_t
elide_kv_bytes(int64_t ctx, int64_t kv_heads, int64_t head_dim)
{
	if (ctx <= 0 || kv_heads <= 0 || head_dim <= 0)
		return 0;
	return 2u * (uint64_t)ctx * (uint64_t)kv_heads * (uint64_t)head_dim * sizeof(float);
}

uint64_t
elide_align_up(uint64_t n, uint64_t align)
{
	if (align == 0)
		return n;
	return (n + align - 1) & ~(align - 1);
}

uint64_t
elide_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}
