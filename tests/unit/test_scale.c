/* test_scale.c - name lookups take linear time: 100,000 weight declarations (front
 * end), a 100,000-op chain and 100,000 params (textual IR parser and verifier) each
 * load and verify in under 2 s (they took 58-108 s with linear searches).  The bound
 * is 10 s under the sanitizers, which slow everything several times. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "frontend/frontend.h"
#include "ir/ir.h"

#define N 100000

#if defined(__SANITIZE_ADDRESS__)
#define LIMIT_S 10.0
#else
#define LIMIT_S 2.0
#endif

static double
now_s(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* A growing string (open_memstream). */
typedef struct Text {
	char *s;
	size_t n;
	FILE *f;
} Text;

static Module *
parse_eir(Text *t, Diag *d)
{
	fclose(t->f);
	SourceFile src = { .path = "scale.eir", .text = t->s, .len = t->n };
	return ir_parse_module(&src, d);
}

Test(scale, weight_declarations)
{
	Text t;
	t.f = open_memstream(&t.s, &t.n);
	fprintf(t.f, "model m {\n  const dim = 4, vocab = 4, ctx = 8;\n  weights safetensors {\n");
	for (int i = 0; i < N; i++)
		fprintf(t.f, "    w%d: f32[dim] = \"w%d\";\n", i, i);
	fprintf(t.f, "    emb: f32[vocab, dim] = \"emb\";\n  }\n"
	             "  entry step(token: i32, pos: i32) -> f32[dim] { return embed(emb, token) + w%d; }\n}\n", N - 1);
	fclose(t.f);
	Diag d;
	diag_init(&d, stderr);
	double t0 = now_s();
	Module *m = fe_load_text("scale.elide", t.s, t.n, NULL, &d);
	cr_assert(m && ir_verify(m, &d));
	double dt = now_s() - t0;
	cr_assert_eq(m->nparams, N + 1);
	cr_assert_lt(dt, LIMIT_S, "%d declarations took %.2f s", N, dt);
	ir_free_module(m);
	free(t.s);
}

Test(scale, op_chain)
{
	Text t;
	t.f = open_memstream(&t.s, &t.n);
	fprintf(t.f, "module @t {\n  layers = 0;\n  param @emb : f32[16, 8] = \"emb\";\n}\n"
	             "entry step @step(@token: i32, @pos: i32) -> f32[8] {\n  %%tok = arg 0 : i32\n"
	             "  %%e = param @emb : f32[16, 8]\n  %%x0 = embed %%e, %%tok : f32[8]\n");
	for (int i = 1; i < N; i++)
		fprintf(t.f, "  %%x%d = add %%x%d, %%x%d : f32[8]\n", i, i - 1, i - 1);
	fprintf(t.f, "  ret %%x%d\n}\n", N - 1);
	Diag d;
	diag_init(&d, stderr);
	double t0 = now_s();
	Module *m = parse_eir(&t, &d);
	cr_assert(m && ir_verify(m, &d));
	double dt = now_s() - t0;
	cr_assert_geq(m->funcs[0]->nops, N);
	cr_assert_lt(dt, LIMIT_S, "%d ops took %.2f s", N, dt);
	ir_free_module(m);
	free(t.s);
}

Test(scale, params)
{
	Text t;
	t.f = open_memstream(&t.s, &t.n);
	fprintf(t.f, "module @t {\n  layers = 0;\n  param @emb : f32[16, 8] = \"emb\";\n");
	for (int i = 0; i < N; i++)
		fprintf(t.f, "  param @p%d : f32[8] = \"p%d\";\n", i, i);
	fprintf(t.f, "}\nentry step @step(@token: i32, @pos: i32) -> f32[8] {\n  %%tok = arg 0 : i32\n"
	             "  %%e = param @emb : f32[16, 8]\n  %%x = embed %%e, %%tok : f32[8]\n"
	             "  %%p = param @p%d : f32[8]\n  %%y = add %%x, %%p : f32[8]\n  ret %%y\n}\n", N - 1);
	Diag d;
	diag_init(&d, stderr);
	double t0 = now_s();
	Module *m = parse_eir(&t, &d);
	cr_assert(m && ir_verify(m, &d));
	double dt = now_s() - t0;
	cr_assert_eq(m->nparams, N + 1);
	cr_assert_lt(dt, LIMIT_S, "%d params took %.2f s", N, dt);
	ir_free_module(m);
	free(t.s);
}
