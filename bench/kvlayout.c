/* kvlayout.c - the micro-benchmark behind the head-major KV cache and the L2 page
 * prefetch (bench/README.md, Long context): the M shape's caches at ctx 8192 (12
 * layers x 12 KV heads x head size 64, K and V: 604 MB), read one thread as attention
 * reads them, in the position-major layout ([ctx][kv_heads][hd]) and the head-major
 * one ([kv_heads][ctx][hd]), alternating, after a 64 MiB cache flush, best of 6:
 *   1. dense: each head's keys and values at 8000 positions;
 *   2. Quest: 65 random pages of 16 positions per head (sorted, as a selection
 *      lists them), the page 2 places ahead prefetched into L1 (T0) or L2 (T1);
 *   3. page bounds (bf16, 256 B per page and head): 500 pages per head, strided
 *      (prefetched 8 ahead) against contiguous.
 * Not part of make bench; the figures depend on the machine and its load:
 *   cc -std=c17 -O2 -march=native -D_GNU_SOURCE bench/kvlayout.c -o /tmp/kvlayout && /tmp/kvlayout */
#include <immintrin.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

enum { L = 12, KVH = 12, HD = 64, CTX = 8192, P = 16, NP = CTX / P, K = 64, POS = 8000, REPS = 14 };

static double
now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static uint64_t rs = 1;

static uint64_t
rnd(void)
{
	rs = rs * 6364136223846793005ull + 1442695040888963407ull;
	return rs >> 33;
}

/* The float offset of position j of head h in one layer's K (or V). */
static size_t
at(int headmajor, int64_t j, int h)
{
	return headmajor ? ((size_t)h * CTX + (size_t)j) * HD : ((size_t)j * KVH + (size_t)h) * HD;
}

static void *
huge(size_t n)
{
	void *p = aligned_alloc(1 << 21, n);
	if (!p) {
		fprintf(stderr, "kvlayout: out of memory\n");
		exit(1);
	}
	madvise(p, n, MADV_HUGEPAGE);
	memset(p, 1, n);
	return p;
}

int
main(void)
{
	size_t per = (size_t)CTX * KVH * HD; /* floats of one layer's K (or V) */
	float *kv = huge(per * 2 * L * sizeof(float));
	uint16_t *bnd = huge((size_t)L * NP * KVH * 2 * HD * sizeof(uint16_t));
	char *flush = malloc(64 << 20);
	static int sel[L][KVH][K + 1];
	double best[8];
	for (int i = 0; i < 8; i++)
		best[i] = 1e9;
	float sink = 0;
	for (int rep = 0; rep < REPS; rep++) {
		int hm = rep & 1;
		/* 1. dense */
		memset(flush, rep, 64 << 20);
		__m512 acc = _mm512_setzero_ps();
		double t0 = now();
		for (int l = 0; l < L; l++)
			for (int h = 0; h < KVH; h++)
				for (int v = 0; v < 2; v++) {
					const float *base = kv + (size_t)(2 * l + v) * per;
					for (int j = 0; j < POS; j++)
						for (int c = 0; c < HD; c += 16)
							acc = _mm512_add_ps(acc, _mm512_loadu_ps(base + at(hm, j, h) + c));
				}
		double t = now() - t0;
		if (rep >= 2 && t < best[hm])
			best[hm] = t;
		/* 2. Quest's pages, prefetched into L1 then into L2 */
		for (int hint = 0; hint < 2; hint++) {
			for (int l = 0; l < L; l++)
				for (int h = 0; h < KVH; h++) {
					char used[NP] = { 0 };
					for (int c = 0; c < K;) {
						int p = (int)(rnd() % (NP - 1));
						c += !used[p];
						used[p] = 1;
					}
					used[NP - 1] = 1;
					for (int p = 0, c = 0; p < NP; p++)
						if (used[p])
							sel[l][h][c++] = p;
				}
			memset(flush, rep, 64 << 20);
			t0 = now();
			for (int l = 0; l < L; l++)
				for (int h = 0; h < KVH; h++)
					for (int v = 0; v < 2; v++) {
						const float *base = kv + (size_t)(2 * l + v) * per;
						for (int i = 0; i <= K; i++) {
							if (i + 2 <= K)
								for (int r = 0; r < P; r++) {
									const char *a = (const char *)(base + at(hm, (int64_t)sel[l][h][i + 2] * P + r, h));
									for (int b = 0; b < HD * 4; b += 64) {
										if (hint)
											_mm_prefetch(a + b, _MM_HINT_T1);
										else
											_mm_prefetch(a + b, _MM_HINT_T0);
									}
								}
							for (int r = 0; r < P; r++)
								for (int c = 0; c < HD; c += 16)
									acc = _mm512_add_ps(acc, _mm512_loadu_ps(base + at(hm, (int64_t)sel[l][h][i] * P + r, h) + c));
						}
					}
			t = now() - t0;
			if (rep >= 2 && t < best[2 + 2 * hint + hm])
				best[2 + 2 * hint + hm] = t;
		}
		/* 3. the page bounds of one head: strided (prefetched 8 pages ahead) or contiguous */
		memset(flush, rep, 64 << 20);
		__m512i ai = _mm512_setzero_si512();
		t0 = now();
		for (int l = 0; l < L; l++)
			for (int h = 0; h < KVH; h++) {
				const uint16_t *base = bnd + (size_t)l * NP * KVH * 2 * HD;
				for (int p = 0; p < POS / P; p++) {
					const uint16_t *a = hm ? base + ((size_t)h * NP + (size_t)p) * 2 * HD
					                       : base + ((size_t)p * KVH + (size_t)h) * 2 * HD;
					if (!hm)
						for (int b = 0; b < 2 * HD * 2; b += 64)
							_mm_prefetch((const char *)(a + 8 * KVH * 2 * HD) + b, _MM_HINT_T0);
					for (int c = 0; c < 2 * HD; c += 32)
						ai = _mm512_add_epi16(ai, _mm512_loadu_si512(a + c));
				}
			}
		t = now() - t0;
		if (rep >= 2 && t < best[6 + hm])
			best[6 + hm] = t;
		sink += _mm512_reduce_add_ps(acc) + (float)_mm512_reduce_add_epi32(ai);
	}
	double dense = (double)L * KVH * 2 * POS * HD * 4, pages = (double)L * KVH * 2 * (K + 1) * P * HD * 4;
	double bounds = (double)L * KVH * (POS / P) * 2 * HD * 2;
	const char *what[4] = { "dense, every position", "Quest pages, prefetch to L1", "Quest pages, prefetch to L2",
		                "page bounds (bf16)" };
	double bytes[4] = { dense, pages, pages, bounds };
	printf("%-30s %24s %24s\n", "read, 1 thread", "position-major", "head-major");
	for (int i = 0; i < 4; i++)
		printf("%-30s %9.2f ms %6.1f GB/s %9.2f ms %6.1f GB/s\n", what[i], best[2 * i] * 1e3,
		       bytes[i] / best[2 * i] / 1e9, best[2 * i + 1] * 1e3, bytes[i] / best[2 * i + 1] / 1e9);
	return sink == 12345.0f; /* keeps the sums */
}
