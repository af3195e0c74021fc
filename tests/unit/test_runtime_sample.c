/* test_runtime_sample.c - samplers: the RNG (determinism, range, mean), argmax (ties,
 * NaN), temperature sampling against the softmax distribution, top-p restricted to
 * the nucleus and in proportion inside it, scratch and bisection paths agreeing. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/elide_rt.h"

Test(rt_rng, deterministic_and_uniform)
{
	uint64_t a = 123, b = 123, c = 124;
	int same = 0;
	for (int i = 0; i < 100; i++) {
		uint64_t x = elide_rng_next(&a);
		cr_assert_eq(x, elide_rng_next(&b));
		same += x == elide_rng_next(&c);
	}
	cr_assert_eq(same, 0);
	uint64_t s = 0; /* seed 0 works */
	double sum = 0;
	enum { N = 200000 };
	for (int i = 0; i < N; i++) {
		float f = elide_rng_float(&s);
		cr_assert(f >= 0.0f && f < 1.0f);
		sum += f;
	}
	cr_assert_float_eq(sum / N, 0.5, 0.005);
}

Test(rt_sample, argmax)
{
	float l[] = { 1, 3, -2, 3, 0.5f };
	cr_assert_eq(elide_sample_argmax(l, 5), 1); /* first of a tie */
	float m[] = { NAN, -1, NAN, 2, NAN };
	cr_assert_eq(elide_sample_argmax(m, 5), 3);
	float all_nan[] = { NAN, NAN };
	cr_assert_eq(elide_sample_argmax(all_nan, 2), -1); /* no token, not token 0 */
	uint64_t r0 = 1;
	cr_assert_eq(elide_sample_temperature(all_nan, 2, 0.8f, &r0), -1);
	cr_assert_eq(elide_sample_top_p(all_nan, 2, 0.8f, 0.5f, &r0, NULL, 0), -1);
	float neg[] = { -INFINITY, -5, -INFINITY };
	cr_assert_eq(elide_sample_argmax(neg, 3), 1);
	cr_assert_eq(elide_sample_argmax(l, 0), -1);
	cr_assert_eq(elide_sample_argmax(NULL, 3), -1);
	/* temperature 0 and top_p 0 mean greedy, and do not touch the rng */
	uint64_t rng = 5;
	cr_assert_eq(elide_sample_temperature(l, 5, 0.0f, &rng), 1);
	cr_assert_eq(elide_sample_top_p(l, 5, 1.0f, 0.0f, &rng, NULL, 0), 1);
	cr_assert_eq(elide_sample_top_p(l, 5, 0.0f, 0.9f, &rng, NULL, 0), 1);
	cr_assert_eq(rng, 5u);
}

/* chi-square-like check: every count within 5 sigma of n * p */
static void
check_counts(const int *count, const double *p, int k, int n)
{
	for (int i = 0; i < k; i++) {
		double mu = n * p[i], sd = sqrt(n * p[i] * (1 - p[i]));
		cr_assert(fabs(count[i] - mu) <= 5 * sd + 1e-9, "token %d: %d draws, expected %.1f +- %.1f", i,
		          count[i], mu, sd);
	}
}

static void
softmax(const float *l, int k, float t, double *p)
{
	double s = 0, m = -INFINITY;
	for (int i = 0; i < k; i++)
		m = fmax(m, l[i]);
	for (int i = 0; i < k; i++)
		s += p[i] = exp((l[i] - m) / t);
	for (int i = 0; i < k; i++)
		p[i] /= s;
}

Test(rt_sample, temperature_distribution)
{
	float l[6] = { 2.0f, 1.0f, 0.0f, -1.0f, 0.5f, 1.5f };
	float temps[] = { 1.0f, 0.5f, 2.0f };
	for (size_t ti = 0; ti < 3; ti++) {
		int count[6] = { 0 };
		double p[6];
		uint64_t rng = 2024 + ti;
		enum { N = 60000 };
		for (int i = 0; i < N; i++) {
			int32_t t = elide_sample_temperature(l, 6, temps[ti], &rng);
			cr_assert(t >= 0 && t < 6);
			count[t]++;
		}
		softmax(l, 6, temps[ti], p);
		check_counts(count, p, 6, N);
	}
	/* same seed, same sequence */
	uint64_t a = 9, b = 9;
	for (int i = 0; i < 100; i++)
		cr_assert_eq(elide_sample_temperature(l, 6, 1.0f, &a), elide_sample_temperature(l, 6, 1.0f, &b));
}

Test(rt_sample, top_p_nucleus)
{
	/* probabilities at t = 1: about .50 .25 .125 .0625 ... (logits ln 2 apart) */
	enum { K = 10, N = 60000 };
	float l[K];
	for (int i = 0; i < K; i++)
		l[(i * 3) % K] = -(float)i * logf(2.0f); /* shuffled order */
	double p[K];
	softmax(l, K, 1.0f, p);
	/* top_p 0.8: nucleus = the tokens of mass .5 .25 .125 (cumulative .875 >= .8) */
	float top = 0.8f;
	char scratch[ELIDE_TOP_P_SCRATCH(K)] __attribute__((aligned(8)));
	for (int path = 0; path < 2; path++) {
		int count[K] = { 0 };
		uint64_t rng = 77;
		for (int i = 0; i < N; i++) {
			int32_t t = path ? elide_sample_top_p(l, K, 1.0f, top, &rng, scratch, sizeof scratch)
			                 : elide_sample_top_p(l, K, 1.0f, top, &rng, NULL, 0);
			count[t]++;
		}
		double q[K], s = 0;
		for (int i = 0; i < K; i++)
			s += q[i] = l[i] >= -2.0f * logf(2.0f) - 1e-4f ? p[i] : 0;
		int in = 0;
		for (int i = 0; i < K; i++) {
			q[i] /= s;
			if (q[i] == 0)
				cr_assert_eq(count[i], 0, "token %d outside the nucleus drawn %d times", i, count[i]);
			else
				in++;
		}
		cr_assert_eq(in, 3);
		check_counts(count, q, K, N);
	}
	/* top_p >= 1 is plain temperature sampling: same draws */
	uint64_t a = 3, b = 3;
	for (int i = 0; i < 200; i++)
		cr_assert_eq(elide_sample_top_p(l, K, 0.7f, 1.0f, &a, NULL, 0), elide_sample_temperature(l, K, 0.7f, &b));
	/* a tiny top_p keeps only the best token */
	for (int i = 0; i < 200; i++)
		cr_assert_eq(elide_sample_top_p(l, K, 1.0f, 0.01f, &a, NULL, 0), 0);
}

Test(rt_sample, top_p_paths_agree)
{
	/* random logits of a realistic vocabulary: scratch (sort) and bisection give the
	 * same token for the same rng, over many seeds and settings */
	enum { V = 32000 };
	float *l = malloc(V * sizeof *l);
	void *scratch = malloc(ELIDE_TOP_P_SCRATCH(V));
	uint64_t g = 11;
	for (int i = 0; i < V; i++)
		l[i] = 4.0f * (elide_rng_float(&g) - 0.5f) + (i % 97 == 0 ? 6.0f : 0.0f);
	l[5] = NAN; /* NaN logits are never drawn */
	float tops[] = { 0.1f, 0.5f, 0.9f, 0.95f };
	float temps[] = { 0.6f, 1.0f, 1.3f };
	for (int ti = 0; ti < 3; ti++)
		for (int pi = 0; pi < 4; pi++)
			for (int s = 0; s < 10; s++) {
				uint64_t r1 = (uint64_t)s * 1000 + 1, r2 = r1;
				int32_t a = elide_sample_top_p(l, V, temps[ti], tops[pi], &r1, scratch, ELIDE_TOP_P_SCRATCH(V));
				int32_t b = elide_sample_top_p(l, V, temps[ti], tops[pi], &r2, NULL, 0);
				cr_assert_eq(a, b, "t %.1f p %.2f seed %d: %d vs %d", temps[ti], tops[pi], s, a, b);
				cr_assert_eq(r1, r2);
				cr_assert(a >= 0 && a < V && a != 5);
			}
	/* a scratch buffer too small falls back to bisection */
	uint64_t r1 = 5, r2 = 5;
	cr_assert_eq(elide_sample_top_p(l, V, 1.0f, 0.9f, &r1, scratch, 16),
	             elide_sample_top_p(l, V, 1.0f, 0.9f, &r2, NULL, 0));
	free(scratch);
	free(l);
}
