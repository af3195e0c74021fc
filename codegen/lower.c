/* lower.c - one LLVM module per elide module: LLVM helpers, entry functions, cg_compile.
 * Algorithm of cg_compile:
 *   1. Make the target machine; choose vector width, panel width and micro-kernel rows.
 *   2. Lay out the state region (K and V of every cache, 64-byte aligned).
 *   3. For every entry: plan fusion and arena offsets (plan.c), then emit
 *      `int NAME_ENTRY(ctx, args..., out)`: argument checks first (length, positions,
 *      token ids) so that a rejected call changes nothing, then one kernel call or
 *      inline loop per op in program order; regions become basic blocks, and each
 *      'ret' writes the result, counts the statistics and returns (control.c).
 *   4. The arena is the largest plan; the context is header, knobs, stat slots,
 *      arena, state.
 *   5. Weight regions are added as kernels ask for them; the blob is packed last.
 *   6. The context API (glue.c) completes the module.
 * Entries take the context first, then each argument (an i32 scalar, or a pointer
 * and a length for a bounded array), then the output pointer; they return a status. */
#include "codegen/codegen.h"

#include <llvm-c/Analysis.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- entries ---- */

/* Token ids of an argument below the table's rows. */
static void
check_token_arg(Cg *g, const Op *op)
{
	const Func *f = g->f;
	int64_t vocab = cg_static_rows(f->vals[op->args[0]].type);
	Type tt = f->vals[op->args[1]].type;
	if (tt.rank == 0) {
		LLVMValueRef tok = cg_val_scalar(g, op->args[1]);
		cg_fail_if(g, LLVMBuildICmp(g->b, LLVMIntUGE, tok, cg_i32c(g, (int32_t)vocab), ""), ELIDE_ERR_TOKEN);
		return;
	}
	LLVMValueRef toks = cg_val_ptr(g, op->args[1]);
	CgLoop l = cg_loop_begin(g, cg_i64(g, 0), cg_len(g, tt), NULL, "tokcheck");
	LLVMValueRef tok = cg_load(g, g->i32, cg_gep(g, g->i32, toks, l.iv), 4);
	cg_fail_if(g, LLVMBuildICmp(g->b, LLVMIntUGE, tok, cg_i32c(g, (int32_t)vocab), ""), ELIDE_ERR_TOKEN);
	cg_loop_end(g, &l);
}

/* The one-row form of attention: its query row must be one of k's T rows. */
static void
check_query_row(Cg *g, const Op *op)
{
	Type kt = g->f->vals[op->args[1]].type;
	int64_t need = op->ia[3] >= 0 ? op->ia[3] + 1 : -op->ia[3];
	if (kt.dyn0)
		cg_fail_if(g, LLVMBuildICmp(g->b, LLVMIntSLT, cg_rows(g, kt), cg_i64(g, need), ""), ELIDE_ERR_SEQ_LEN);
}

/* Positions and token ids are checked before anything is written. */
static void
emit_checks(Cg *g)
{
	const Func *f = g->f;
	for (uint32_t i = 0; i < f->nops; i++) {
		const Op *op = &f->ops[i];
		Type t0 = op->nargs ? f->vals[op->args[0]].type : (Type){ 0 };
		if (ir_op_is_attention(op->code) && op->ia[2] >= 0) {
			/* k's rows: the one-row form's q has one, but all T rows are written */
			const State *s = &g->m->states[op->ia[2]];
			cg_fail_outside(g, cg_val_scalar(g, op->args[3]), cg_rows(g, f->vals[op->args[1]].type), s->ctx,
			                ELIDE_ERR_POS);
			if (op->code == OP_ATTENTION && t0.rank == 1)
				check_query_row(g, op);
		} else if (op->code == OP_ATTENTION && t0.rank == 1) {
			check_query_row(g, op);
		} else if (op->code == OP_KV_WRITE && cg_known_early(f, op->args[2])) {
			/* on every path, taken or not: a call is rejected before anything is written */
			const State *s = &g->m->states[op->ia[2]];
			cg_fail_outside(g, cg_val_scalar(g, op->args[2]), cg_rows(g, t0), s->ctx, ELIDE_ERR_POS);
		} else if (op->code == OP_ROPE && cg_known_early(f, op->args[1])) {
			cg_fail_outside(g, cg_val_scalar(g, op->args[1]), cg_rows(g, t0), g->rope_len, ELIDE_ERR_POS);
		} else if (op->code == OP_ROW && t0.dyn0) {
			/* row i of a sequence needs i < T (or -i <= T from the end) */
			int64_t need = op->ia[0] >= 0 ? op->ia[0] + 1 : -op->ia[0];
			cg_fail_if(g, LLVMBuildICmp(g->b, LLVMIntSLT, cg_rows(g, t0), cg_i64(g, need), ""),
			           ELIDE_ERR_SEQ_LEN);
		} else if (op->code == OP_POSITIONS && cg_known_early(f, op->args[1])) {
			/* start + t must stay a valid i32 position */
			cg_fail_outside(g, cg_val_scalar(g, op->args[1]), cg_len(g, t0), (int64_t)INT32_MAX + 1,
			                ELIDE_ERR_POS);
		} else if (op->code == OP_EMBED && cg_embeds_positions(f, op)) {
			/* a position table [P, D]: positions start.. start+T-1 must be below P */
			const Op *po = ir_def((Func *)f, op->args[1]);
			cg_fail_outside(g, cg_val_scalar(g, po->args[1]), cg_len(g, f->vals[po->args[0]].type),
			                cg_static_rows(t0), ELIDE_ERR_POS);
		} else if (op->code == OP_EMBED && ir_def((Func *)f, op->args[1])->code == OP_ARG) {
			check_token_arg(g, op);
		}
	}
}

/* Gives back the context's busy flag (a release store of 0): before every return of
 * an entry that took it (the final and the early 'ret's, control.c, and failures). */
void
cg_release_busy(Cg *g)
{
	LLVMValueRef st = LLVMBuildStore(g->b, cg_i64(g, 0), cg_gepb(g, g->ctx, CG_CTX_BUSY));
	LLVMSetOrdering(st, LLVMAtomicOrderingRelease);
	LLVMSetAlignment(st, 8);
}

static void
lower_entry(Cg *g, const Func *f, uint32_t index)
{
	g->f = f;
	cg_plan_func(g->m, f, g->fuse, &g->plan);
	/* signature */
	LLVMTypeRef params[2 * 16 + 2];
	unsigned np = 0;
	params[np++] = g->ptr;
	for (uint32_t i = 0; i < f->nargs && i < 16; i++) {
		if (f->args[i].type.rank == 0) {
			params[np++] = g->i32;
		} else {
			params[np++] = g->ptr;
			params[np++] = g->i32;
		}
	}
	params[np++] = g->ptr;
	LLVMTypeRef fty = LLVMFunctionType(g->i32, params, np, 0);
	char *name = arena_printf(&g->m->arena, "%s_%s", g->m->name, f->name);
	g->fn = LLVMAddFunction(g->mod, name, fty);
	g->body_fn = g->fn;
	g->b = LLVMCreateBuilderInContext(g->c);
	LLVMPositionBuilderAtEnd(g->b, LLVMAppendBasicBlockInContext(g->c, g->fn, "entry"));
	g->argblk = cg_alloca(g, LLVMArrayType(g->i64, 16), "args");
	g->failst = cg_alloca(g, g->i32, "status");
	g->fail = LLVMAppendBasicBlockInContext(g->c, g->fn, "fail");
	g->ctx = LLVMGetParam(g->fn, 0);
	g->out = LLVMGetParam(g->fn, np - 1);
	g->argv = arena_alloc(&g->m->arena, (f->nargs + 1) * sizeof *g->argv);
	g->nrows = cg_i64(g, 1);

	cg_fail_if(g, LLVMBuildIsNull(g->b, g->ctx, ""), ELIDE_ERR_ARG);
	LLVMValueRef magic = cg_load(g, g->i64, g->ctx, 8);
	cg_fail_if(g, LLVMBuildICmp(g->b, LLVMIntNE, magic, LLVMConstInt(g->i64, CG_CTX_MAGIC_VALUE, 0), ""),
	        ELIDE_ERR_ARG);
	/* one call at a time per context: the flag is taken with an atomic exchange and
	 * given back on every return; a call that finds it taken fails with
	 * ELIDE_ERR_BUSY and leaves it alone */
	LLVMValueRef held = cg_alloca(g, g->i8, "held");
	cg_store(g, LLVMConstInt(g->i8, 0, 0), held, 1);
	LLVMValueRef busy = cg_gepb(g, g->ctx, CG_CTX_BUSY);
	LLVMValueRef was = LLVMBuildAtomicRMW(g->b, LLVMAtomicRMWBinOpXchg, busy, cg_i64(g, 1),
	                                      LLVMAtomicOrderingAcquire, 0);
	cg_fail_if(g, LLVMBuildICmp(g->b, LLVMIntNE, was, cg_i64(g, 0), ""), ELIDE_ERR_BUSY);
	cg_store(g, LLVMConstInt(g->i8, 1, 0), held, 1);
	cg_fail_if(g, LLVMBuildIsNull(g->b, g->out, ""), ELIDE_ERR_ARG);
	g->wts = cg_load(g, g->ptr, cg_gepb(g, g->ctx, CG_CTX_WEIGHTS), 8);
	cg_fail_if(g, LLVMBuildIsNull(g->b, g->wts, ""), ELIDE_ERR_NO_WEIGHTS);
	g->arena = cg_gepb(g, g->ctx, (int64_t)g->r->arena_off);
	g->state = cg_gepb(g, g->ctx, (int64_t)(g->r->arena_off + g->r->arena_size));
	unsigned pi = 1;
	for (uint32_t i = 0; i < f->nargs; i++) {
		Type t = f->args[i].type;
		if (t.rank == 0) {
			g->argv[i] = LLVMGetParam(g->fn, pi++);
			continue;
		}
		g->argv[i] = LLVMGetParam(g->fn, pi++);
		LLVMValueRef len = LLVMGetParam(g->fn, pi++);
		cg_fail_if(g, LLVMBuildIsNull(g->b, g->argv[i], ""), ELIDE_ERR_ARG);
		int64_t bound = t.dims[0];
		if (t.dyn0) {
			cg_fail_if(g, LLVMBuildOr(g->b, LLVMBuildICmp(g->b, LLVMIntSLT, len, cg_i32c(g, 1), ""),
			                       LLVMBuildICmp(g->b, LLVMIntSGT, len, cg_i32c(g, (int32_t)bound), ""), ""),
			        ELIDE_ERR_SEQ_LEN);
			g->nrows = LLVMBuildSExt(g->b, len, g->i64, "T");
		} else {
			cg_fail_if(g, LLVMBuildICmp(g->b, LLVMIntNE, len, cg_i32c(g, (int32_t)bound), ""), ELIDE_ERR_SEQ_LEN);
		}
	}
	emit_checks(g);
	g->partner = xmalloc((f->nops + 1) * sizeof *g->partner);
	g->branches = xmalloc((f->nops + 1) * sizeof *g->branches);
	g->nbranches = 0;
	char rmsg[160];
	if (!ir_match_regions(f, g->partner, rmsg, sizeof rmsg, NULL))
		ELIDE_ICE("regions do not nest in a verified entry");
	for (uint32_t i = 0; i < f->nops; i++) {
		const Op *op = &f->ops[i];
		if (g->plan.fuse[i].skip || (ir_op_flags[op->code] & OPF_LEAF))
			continue;
		cg_lower_op(g, i); /* every 'ret' returns (control.c) */
	}
	/* every path ended in a 'ret' (the verifier's rule): what remains is unreachable */
	cg_store(g, cg_i32c(g, ELIDE_ERR_ARG), g->failst, 4);
	LLVMBuildBr(g->b, g->fail);
	free(g->partner);
	free(g->branches);
	g->partner = NULL;
	g->branches = NULL;
	LLVMPositionBuilderAtEnd(g->b, g->fail);
	LLVMBasicBlockRef rel = LLVMAppendBasicBlockInContext(g->c, g->fn, "release");
	LLVMBasicBlockRef out = LLVMAppendBasicBlockInContext(g->c, g->fn, "out");
	LLVMBuildCondBr(g->b, LLVMBuildICmp(g->b, LLVMIntNE, cg_load(g, g->i8, held, 1), LLVMConstInt(g->i8, 0, 0), ""),
	                rel, out);
	LLVMPositionBuilderAtEnd(g->b, rel);
	cg_release_busy(g);
	LLVMBuildBr(g->b, out);
	LLVMPositionBuilderAtEnd(g->b, out);
	LLVMBuildRet(g->b, cg_load(g, g->i32, g->failst, 4));
	LLVMDisposeBuilder(g->b);
	g->b = NULL;

	/* int NAME_ENTRY__call(ctx, const int64_t *argv, void *out): the entry with its
	 * arguments in an array (a scalar in one slot, an array as pointer and length),
	 * for callers that pick the entry at run time (the JIT of `elide run`) */
	LLVMValueRef entry = g->fn;
	LLVMTypeRef cp[3] = { g->ptr, g->ptr, g->ptr };
	g->fn = LLVMAddFunction(g->mod, arena_printf(&g->m->arena, "%s__call", name),
	                        LLVMFunctionType(g->i32, cp, 3, 0));
	g->b = LLVMCreateBuilderInContext(g->c);
	LLVMPositionBuilderAtEnd(g->b, LLVMAppendBasicBlockInContext(g->c, g->fn, "entry"));
	LLVMValueRef av[2 * 16 + 2];
	unsigned na = 0, slot = 0;
	av[na++] = LLVMGetParam(g->fn, 0);
	for (uint32_t i = 0; i < f->nargs && i < 16; i++) {
		LLVMValueRef pa = LLVMGetParam(g->fn, 1);
		if (f->args[i].type.rank == 0) {
			av[na++] = LLVMBuildTrunc(g->b, cg_load(g, g->i64, cg_gepb(g, pa, 8 * slot++), 8), g->i32, "");
		} else {
			av[na++] = LLVMBuildIntToPtr(g->b, cg_load(g, g->i64, cg_gepb(g, pa, 8 * slot++), 8), g->ptr, "");
			av[na++] = LLVMBuildTrunc(g->b, cg_load(g, g->i64, cg_gepb(g, pa, 8 * slot++), 8), g->i32, "");
		}
	}
	av[na++] = LLVMGetParam(g->fn, 2);
	LLVMBuildRet(g->b, LLVMBuildCall2(g->b, fty, entry, av, na, ""));
	LLVMDisposeBuilder(g->b);
	g->b = NULL;

	CgEntry *e = &g->r->entries[index];
	e->name = f->name;
	e->kind = f->kind;
	e->arena = g->plan.size;
	cg_plan_free(&g->plan);
}

/* Positions the rope tables cover: the longest cache, else the longest bounded argument. */
static int64_t
rope_positions(const Module *m)
{
	int64_t n = 0;
	for (uint32_t i = 0; i < m->nstates; i++)
		if (m->states[i].ctx > n)
			n = m->states[i].ctx;
	if (n)
		return n;
	for (uint32_t i = 0; i < m->nfuncs; i++)
		for (uint32_t a = 0; a < m->funcs[i]->nargs; a++)
			if (m->funcs[i]->args[a].type.rank && m->funcs[i]->args[a].type.dims[0] > n)
				n = m->funcs[i]->args[a].type.dims[0];
	return n ? n : ir_config_get(m, "ctx", 1);
}

static uint64_t
model_hash(const CgResult *r)
{
	const Module *m = r->m;
	char buf[512];
	uint64_t h = hash_bytes(m->name, strlen(m->name), 0);
	int n = snprintf(buf, sizeof buf, "%s|%d|%d|%d", r->target->triple, r->target->vec,
	                 r->target->nvec, m->nlayers);
	h = hash_bytes(buf, (size_t)n, h);
	for (uint32_t i = 0; i < r->weights.nregions; i++) {
		const CgRegion *g = &r->weights.regions[i];
		char ty[128] = "";
		if (g->param >= 0)
			ir_type_str(m->params[g->param].type, ty, sizeof ty);
		n = snprintf(buf, sizeof buf, "%d|%s|%s|%lld|%lld|%g|%llu|%g|%g|%g|%lld|%d|%d", (int)g->layout,
		             g->param >= 0 ? m->params[g->param].name : "", ty, (long long)g->a,
		             (long long)g->b, g->theta, (unsigned long long)g->offset, (double)g->scale[0],
		             (double)g->scale[1], (double)g->scale[2], (long long)g->orig,
		             g->param >= 0 ? (int)m->params[g->param].format : -1,
		             g->param >= 0 ? m->params[g->param].group : -1);
		h = hash_bytes(buf, (size_t)n, h);
	}
	for (uint32_t i = 0; i < m->nstates; i++) {
		n = snprintf(buf, sizeof buf, "st|%lld|%lld|%lld|%lld", (long long)m->states[i].ctx,
		             (long long)m->states[i].kv_heads, (long long)m->states[i].head_dim, (long long)m->states[i].page);
		h = hash_bytes(buf, (size_t)n, h);
	}
	return h;
}

CgResult *
cg_compile(Module *m, const CgOptions *o, Diag *d)
{
	char err[512];
	CgTarget *t = cg_target_new(o->triple, o->cpu, o->features, o->opt_level, err, sizeof err);
	if (!t) {
		diag_error(d, (Loc){ 0 }, "%s", err);
		return NULL;
	}
	CgResult *r = xcalloc(1, sizeof *r);
	r->m = m;
	r->phases = o->phases;
	r->target = t;
	r->llctx = LLVMContextCreate();
	r->mod = LLVMModuleCreateWithNameInContext(m->name, r->llctx);
	LLVMSetTarget(r->mod, t->triple);
	char *dl = LLVMCopyStringRepOfTargetData(t->td);
	LLVMSetDataLayout(r->mod, dl);
	LLVMDisposeMessage(dl);

	Cg g = { .r = r, .m = m, .t = t, .c = r->llctx, .mod = r->mod };
	g.f32 = LLVMFloatTypeInContext(g.c);
	g.i32 = LLVMInt32TypeInContext(g.c);
	g.i64 = LLVMInt64TypeInContext(g.c);
	g.i8 = LLVMInt8TypeInContext(g.c);
	g.i1 = LLVMInt1TypeInContext(g.c);
	g.ptr = LLVMPointerTypeInContext(g.c, 0);
	g.voidt = LLVMVoidTypeInContext(g.c);
	g.vt = LLVMVectorType(g.f32, (unsigned)t->vec);
	LLVMTypeRef tp[3] = { g.ptr, g.i64, g.i64 };
	g.task_ty = LLVMFunctionType(g.voidt, tp, 3, 0);
	LLVMTypeRef pp[4] = { g.ptr, g.i64, g.ptr, g.ptr };
	g.pfor_ty = LLVMFunctionType(g.voidt, pp, 4, 0);
	g.rope_len = rope_positions(m);
	g.fuse = o->fuse;
	g.d = d;
	int errors0 = d->nerrors;

	/* state layout */
	r->state_off = xcalloc(m->nstates + 1, sizeof *r->state_off);
	for (uint32_t i = 0; i < m->nstates; i++) {
		const State *s = &m->states[i];
		r->state_off[i] = r->state_size;
		r->state_size += elide_kv_layout_of(s->ctx, s->kv_heads, s->head_dim, s->page).bytes;
	}
	/* arena size first: entries address the state after the arena */
	for (uint32_t i = 0; i < m->nfuncs; i++) {
		CgPlan p;
		cg_plan_func(m, m->funcs[i], o->fuse, &p);
		if (p.size > r->arena_size)
			r->arena_size = p.size;
		cg_plan_free(&p);
	}
	r->arena_size = (r->arena_size + 63) & ~(uint64_t)63;
	r->knob_off = CG_CTX_HDR;
	r->stat_off = r->knob_off + 8 * (uint64_t)m->nknobs;
	r->arena_off = (r->stat_off + 8 * (uint64_t)m->nstats + 63) & ~(uint64_t)63;
	r->ctx_size = r->arena_off + r->arena_size + r->state_size;
	r->nentries = m->nfuncs;
	r->entries = xcalloc(m->nfuncs + 1, sizeof *r->entries);
	for (uint32_t i = 0; i < m->nfuncs; i++) {
		lower_entry(&g, m->funcs[i], i);
		if (diag_too_many(d))
			break;
	}
	if (d->nerrors > errors0) {
		cg_result_free(r);
		return NULL;
	}
	cg_compute_costs(r);
	r->model_hash = model_hash(r);
	r->blob_size = ELIDE_BLOB_HEADER_SIZE + r->weights.size;
	r->weights_size = r->blob_size;
	char buf[256];
	int n = snprintf(buf, sizeof buf, "%llx|%llu|%llu|%llu", (unsigned long long)r->model_hash,
	                 (unsigned long long)r->ctx_size, (unsigned long long)r->arena_size,
	                 (unsigned long long)r->state_size);
	r->abi_hash = hash_bytes(buf, (size_t)n, 0);
	for (uint32_t i = 0; i < m->nknobs; i++) /* knob and stat enums are part of the API */
		r->abi_hash = hash_bytes(m->knobs[i].name, strlen(m->knobs[i].name) + 1, r->abi_hash);
	for (uint32_t i = 0; i < m->nstats; i++)
		r->abi_hash = hash_bytes(m->stats[i].name, strlen(m->stats[i].name) + 1, r->abi_hash ^ 0x5354);
	for (uint32_t i = 0; i < m->nfuncs; i++) {
		const Func *f = m->funcs[i];
		r->abi_hash = hash_bytes(f->name, strlen(f->name), r->abi_hash);
		for (uint32_t a = 0; a < f->nargs; a++)
			r->abi_hash = hash_bytes(&f->args[a].type, sizeof f->args[a].type, r->abi_hash);
	}

	LLVMBuilderRef b = LLVMCreateBuilderInContext(g.c);
	LLVMValueRef emb = NULL;
	if (o->embed_weights) {
		/* either a zero-filled section that cg_write_outputs fills in the object file,
		 * or the blob itself as the initializer (other object formats, asm, LLVM IR) */
		LLVMValueRef init;
		r->embed_patch = o->embed_patch && cg_target_is_elf(t);
		if (r->embed_patch) {
			init = LLVMConstNull(LLVMArrayType2(g.i8, r->blob_size));
		} else if (cg_blob(r, err, sizeof err)) {
			init = LLVMConstStringInContext2(g.c, (const char *)r->blob, r->blob_size, 1);
		} else {
			diag_error(d, (Loc){ 0 }, "%s", err);
			LLVMDisposeBuilder(b);
			cg_result_free(r);
			return NULL;
		}
		char *nm = arena_printf(&m->arena, "%s_embedded_weights", m->name);
		emb = LLVMAddGlobal(r->mod, LLVMTypeOf(init), nm);
		LLVMSetInitializer(emb, init);
		LLVMSetGlobalConstant(emb, 1);
		LLVMSetLinkage(emb, LLVMInternalLinkage);
		LLVMSetAlignment(emb, 64);
		if (r->embed_patch)
			LLVMSetSection(emb, CG_EMBED_SECTION);
	}
	cg_emit_glue(r, b, emb);
	LLVMDisposeBuilder(b);
	for (uint32_t i = 0; i < g.nk; i++)
		free(g.knames[i]);
	free(g.knames);
	free(g.kfns);

	char *msg = NULL;
	if (LLVMVerifyModule(r->mod, LLVMReturnStatusAction, &msg)) {
		fprintf(stderr, "%s\n", msg);
		LLVMDisposeMessage(msg);
		ELIDE_ICE("generated LLVM module does not verify");
	}
	LLVMDisposeMessage(msg);
	return r;
}

void
cg_result_free(CgResult *r)
{
	if (!r)
		return;
	if (r->mod)
		LLVMDisposeModule(r->mod);
	if (r->llctx)
		LLVMContextDispose(r->llctx);
	cg_target_free(r->target);
	for (uint32_t i = 0; i < r->nentries; i++) {
		free(r->entries[i].layers);
		free(r->entries[i].paths);
	}
	free(r->entries);
	free(r->weights.regions);
	free(r->state_off);
	free(r->blob);
	free(r);
}
