/* test_cg_plan.c - the arena plan: for every entry of random Llamas (and a pruned
 * one), no two buffers that are live at the same op overlap, every buffer fits the
 * plan, an op's output never shares memory with its inputs, buffers are reused
 * (the plan is smaller than the sum of the buffers), and fusion folds the residual
 * adds and the SwiGLU product into the linears. */
#include <criterion/criterion.h>
#include <stdlib.h>

#include "codegen/codegen.h"
#include "tests/support/randmodel.h"

static int64_t
bytes_of(Type t)
{
	int64_t n = ir_type_numel(t);
	return ((n > 0 ? n : 1) * (int64_t)ir_dtype_size(t.dtype) + 63) & ~(int64_t)63;
}

static void
check_func(const Func *f, bool fuse)
{
	CgPlan p;
	cg_plan_func(NULL, f, fuse, &p);
	uint32_t *start = calloc(f->nvals, sizeof *start), *end = calloc(f->nvals, sizeof *end);
	for (uint32_t v = 0; v < f->nvals; v++)
		start[v] = end[v] = UINT32_MAX;
	for (uint32_t i = 0; i < f->nops; i++) {
		if (!p.fuse[i].skip && p.offset[p.fuse[i].out] >= 0)
			start[p.fuse[i].out] = end[p.fuse[i].out] = i;
	}
	for (uint32_t i = 0; i < f->nops; i++)
		for (uint32_t a = 0; a < f->ops[i].nargs; a++) {
			ValueId v = f->ops[i].args[a];
			if (start[v] != UINT32_MAX && end[v] < i)
				end[v] = i;
		}
	int64_t total = 0;
	for (uint32_t v = 0; v < f->nvals; v++) {
		if (p.offset[v] < 0)
			continue;
		cr_assert(start[v] != UINT32_MAX, "value %u has a buffer but no writer", v);
		int64_t sv = bytes_of(f->vals[v].type);
		total += sv;
		cr_assert(p.offset[v] % 64 == 0);
		cr_assert((uint64_t)(p.offset[v] + sv) <= p.size);
		for (uint32_t w = v + 1; w < f->nvals; w++) {
			if (p.offset[w] < 0)
				continue;
			bool live_together = start[v] <= end[w] && start[w] <= end[v];
			int64_t sw = bytes_of(f->vals[w].type);
			bool overlap = p.offset[v] < p.offset[w] + sw && p.offset[w] < p.offset[v] + sv;
			cr_assert(!(live_together && overlap), "%%%u [%u,%u] and %%%u [%u,%u] share memory", v, start[v],
			          end[v], w, start[w], end[w]);
		}
	}
	cr_assert((int64_t)p.size < total, "no reuse: plan %llu of %lld bytes", (unsigned long long)p.size,
	          (long long)total);
	if (fuse) {
		uint32_t nlin = 0, nbin = 0, nun = 0;
		for (uint32_t i = 0; i < f->nops; i++)
			if (f->ops[i].code == OP_LINEAR) {
				nlin++;
				nbin += p.fuse[i].binary >= 0;
				nun += p.fuse[i].unary >= 0;
			}
		/* per layer: wo + residual, w2 + residual, w3 * silu(w1 x), and silu into w1 */
		cr_assert_geq(nbin, 3 * (nlin - 1) / 7, "%u of %u linears took an add or mul", nbin, nlin);
		cr_assert_geq(nun, (nlin - 1) / 7, "%u of %u linears took the silu", nun, nlin);
	}
	free(start);
	free(end);
	cg_plan_free(&p);
}

Test(cg_plan, no_live_overlap_and_reuse)
{
	RmConfig c = rm_default_config();
	for (int kv = 1; kv <= 4; kv *= 4) {
		c.kv_heads = kv;
		Module *m = rm_build_module(&c, "llama");
		for (uint32_t e = 0; e < m->nfuncs; e++) {
			check_func(m->funcs[e], true);
			check_func(m->funcs[e], false);
		}
		ir_free_module(m);
	}
}
