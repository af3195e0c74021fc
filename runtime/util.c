/* util.c - small size helpers (KV cache bytes, alignment), the allocation of a
 * context's memory, and a monotonic clock for products and benchmarks that time their
 * own calls. */
#include "runtime/elide_rt.h"

#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>

elide_kv_layout
elide_kv_layout_of(int64_t ctx, int64_t kv_heads, int64_t head_dim, int64_t page)
{
	elide_kv_layout l = { 0, 0, 0, 0, 0 };
	/* each factor below 2^20 keeps every product far inside 64 bits */
	if (ctx <= 0 || kv_heads <= 0 || head_dim <= 0 || ctx >= (1 << 30) || kv_heads >= (1 << 20) ||
	    head_dim >= (1 << 20) || page < 0)
		return l;
	l.row_bytes = (uint64_t)kv_heads * (uint64_t)head_dim * sizeof(float);
	l.v_offset = elide_align_up((uint64_t)ctx * l.row_bytes, ELIDE_KV_ALIGN);
	l.bounds_offset = 2 * l.v_offset;
	if (page > 0) {
		uint64_t pages = ((uint64_t)ctx + (uint64_t)page - 1) / (uint64_t)page;
		/* min and max per channel as bf16: half a row each */
		l.bounds_bytes = elide_align_up(pages * l.row_bytes, ELIDE_KV_ALIGN);
	}
	l.bytes = 2 * l.v_offset + l.bounds_bytes;
	return l;
}

uint64_t
elide_kv_bytes(int64_t ctx, int64_t kv_heads, int64_t head_dim, int64_t page)
{
	return elide_kv_layout_of(ctx, kv_heads, head_dim, page).bytes;
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

void *
elide_alloc_context(size_t size)
{
	const size_t huge = (size_t)2 << 20;
	if (size < huge)
		return aligned_alloc(64, (size_t)elide_align_up(size, 64));
	size_t n = (size_t)elide_align_up(size, huge);
	if (n < size)
		return NULL;
	void *p = aligned_alloc(huge, n);
#ifdef MADV_HUGEPAGE
	if (p)
		madvise(p, n, MADV_HUGEPAGE); /* advice only: 4 KiB pages if refused */
#endif
	return p;
}
