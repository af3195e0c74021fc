/* kernels.c - linear y[T,N] = x[T,K] W[N,K]^T with explicit vector IR.
 * W is packed in panels [N/NR][K][NR] (pack.c), NR = vec * nvec.  Both kernels are
 * tasks over panels, so threads split the weights and each streams its own
 * contiguous range of them exactly once:
 *   GEMV (one row): per panel, for k: broadcast x[k], FMA with the nvec panel
 *     vectors; two accumulator sets (even and odd k) hide the FMA latency.
 *   GEMM (T rows): per panel, blocks of MR rows go through a register-tiled
 *     micro-kernel holding MR x nvec accumulators; for k it loads nvec panel vectors
 *     once and FMAs them with MR broadcast activations.  The T mod MR rows left go
 *     through the micro-kernel generated for exactly that many rows (a switch).
 * The epilogue (fused unary and binary elementwise ops, plan.c) runs on the
 * accumulators before the store.  The last panel, when N is not a multiple of NR,
 * stores (and loads the other operand) with constant masks.
 * Task arguments: slot 0 x, 1 W panels, 2 y, 3 other operand, 4 T. */
#include "codegen/codegen.h"

#include <stdio.h>
#include <string.h>

typedef struct Lin {
	int64_t n, k, np;         /* outputs, inputs, panels */
	int nr, vec, nvec;
	int lastvalid;            /* valid outputs in the last panel (nr when full) */
	const Op *unary;          /* epilogue ops or NULL */
	const Op *binary;
	bool swap;
	bool other_row;           /* the other operand is one row for all rows */
} Lin;

static LLVMValueRef
mask_const(Cg *g, int valid, int vec)
{
	LLVMValueRef bits[64];
	for (int i = 0; i < vec; i++)
		bits[i] = LLVMConstInt(g->i1, i < valid, 0);
	return LLVMConstVector(bits, (unsigned)vec);
}

/* Epilogue and store of one row's nvec accumulators at y_row (and other_row). */
static void
store_row(Cg *g, const Lin *L, LLVMValueRef *acc, LLVMValueRef yrow, LLVMValueRef orow, bool last)
{
	for (int v = 0; v < L->nvec; v++) {
		int valid = last ? L->lastvalid - v * L->vec : L->vec;
		if (valid <= 0)
			continue;
		if (valid > L->vec)
			valid = L->vec;
		LLVMValueRef val = acc[v];
		LLVMValueRef yp = cg_gep(g, g->f32, yrow, cg_i64(g, v * L->vec));
		if (L->unary)
			val = cg_unary(g, L->unary, val);
		if (L->binary) {
			LLVMValueRef op = cg_gep(g, g->f32, orow, cg_i64(g, v * L->vec));
			LLVMValueRef o;
			if (valid == L->vec) {
				o = cg_load(g, g->vt, op, 4);
			} else {
				LLVMValueRef a[4] = { op, cg_i32c(g, 4), mask_const(g, valid, L->vec), LLVMConstNull(g->vt) };
				LLVMTypeRef tys[2] = { g->vt, g->ptr };
				unsigned id = LLVMLookupIntrinsicID("llvm.masked.load", 16);
				LLVMValueRef fn = LLVMGetIntrinsicDeclaration(g->mod, id, tys, 2);
				o = LLVMBuildCall2(g->b, LLVMIntrinsicGetType(g->c, id, tys, 2), fn, a, 4, "");
			}
			val = L->swap ? cg_binary(g, L->binary->code, o, val) : cg_binary(g, L->binary->code, val, o);
		}
		if (valid == L->vec) {
			cg_store(g, val, yp, 4);
		} else {
			LLVMValueRef a[4] = { val, yp, cg_i32c(g, 4), mask_const(g, valid, L->vec) };
			LLVMTypeRef tys[2] = { g->vt, g->ptr };
			unsigned id = LLVMLookupIntrinsicID("llvm.masked.store", 17);
			LLVMValueRef fn = LLVMGetIntrinsicDeclaration(g->mod, id, tys, 2);
			LLVMBuildCall2(g->b, LLVMIntrinsicGetType(g->c, id, tys, 2), fn, a, 4, "");
		}
	}
}

/* Stores rows with the masked path on the last panel when N % NR != 0. */
static void
store_rows(Cg *g, const Lin *L, LLVMValueRef p, LLVMValueRef *acc, int rows, LLVMValueRef row0,
           LLVMValueRef y, LLVMValueRef other)
{
	LLVMBasicBlockRef full = NULL, part = NULL, done = NULL;
	int passes = L->lastvalid == L->nr ? 1 : 2;
	if (passes == 2) {
		full = LLVMAppendBasicBlockInContext(g->c, g->fn, "full");
		part = LLVMAppendBasicBlockInContext(g->c, g->fn, "partial");
		done = LLVMAppendBasicBlockInContext(g->c, g->fn, "stored");
		LLVMBuildCondBr(g->b, LLVMBuildICmp(g->b, LLVMIntEQ, p, cg_i64(g, L->np - 1), ""), part, full);
	}
	for (int pass = 0; pass < passes; pass++) {
		bool last = pass == 1;
		if (passes == 2)
			LLVMPositionBuilderAtEnd(g->b, last ? part : full);
		for (int r = 0; r < rows; r++) {
			LLVMValueRef row = LLVMBuildAdd(g->b, row0, cg_i64(g, r), "");
			LLVMValueRef off = LLVMBuildAdd(g->b, LLVMBuildMul(g->b, row, cg_i64(g, L->n), ""),
			                                LLVMBuildMul(g->b, p, cg_i64(g, L->nr), ""), "");
			LLVMValueRef yrow = cg_gep(g, g->f32, y, off);
			LLVMValueRef ooff = L->other_row ? LLVMBuildMul(g->b, p, cg_i64(g, L->nr), "") : off;
			LLVMValueRef orow = L->binary ? cg_gep(g, g->f32, other, ooff) : NULL;
			store_row(g, L, acc + r * L->nvec, yrow, orow, last);
		}
		if (passes == 2)
			LLVMBuildBr(g->b, done);
	}
	if (passes == 2)
		LLVMPositionBuilderAtEnd(g->b, done);
}

static LLVMValueRef
fma_v(Cg *g, LLVMValueRef a, LLVMValueRef b, LLVMValueRef c)
{
	LLVMValueRef args[3] = { a, b, c };
	return cg_call_intr(g, "llvm.fma", g->vt, args, 3);
}

/* The micro-kernel for `rows` rows starting at row0 of panel p: returns after the
 * epilogue and the stores.  Accumulators are allocas that SROA turns into registers. */
static void
micro_kernel(Cg *g, const Lin *L, LLVMValueRef p, LLVMValueRef row0, int rows, LLVMValueRef x,
             LLVMValueRef wp, LLVMValueRef y, LLVMValueRef other, LLVMValueRef *accs)
{
	LLVMValueRef zero = LLVMConstNull(g->vt);
	int na = rows * L->nvec;
	for (int i = 0; i < na; i++)
		cg_store(g, zero, accs[i], 64);
	LLVMValueRef xrow0 = cg_gep(g, g->f32, x, LLVMBuildMul(g->b, row0, cg_i64(g, L->k), ""));
	CgLoop l = cg_loop_begin(g, cg_i64(g, 0), cg_i64(g, L->k), NULL, "k");
	LLVMValueRef bv[8];
	LLVMValueRef bk = cg_gep(g, g->f32, wp, LLVMBuildMul(g->b, l.iv, cg_i64(g, L->nr), ""));
	for (int v = 0; v < L->nvec; v++)
		bv[v] = cg_load(g, g->vt, cg_gep(g, g->f32, bk, cg_i64(g, v * L->vec)), (unsigned)(L->vec * 4 > 64 ? 64 : L->vec * 4));
	for (int r = 0; r < rows; r++) {
		LLVMValueRef xp = cg_gep(g, g->f32, xrow0, LLVMBuildAdd(g->b, l.iv, cg_i64(g, r * L->k), ""));
		LLVMValueRef a = cg_splat(g, cg_load(g, g->f32, xp, 4), L->vec);
		for (int v = 0; v < L->nvec; v++) {
			LLVMValueRef ap = accs[r * L->nvec + v];
			cg_store(g, fma_v(g, bv[v], a, cg_load(g, g->vt, ap, 64)), ap, 64);
		}
	}
	cg_loop_end(g, &l);
	LLVMValueRef vals[16 * 8];
	for (int i = 0; i < na; i++)
		vals[i] = cg_load(g, g->vt, accs[i], 64);
	store_rows(g, L, p, vals, rows, row0, y, other);
}

/* GEMV: one row; two accumulator sets over even and odd k. */
static void
gemv_panel(Cg *g, const Lin *L, LLVMValueRef p, LLVMValueRef x, LLVMValueRef wp, LLVMValueRef y,
           LLVMValueRef other, LLVMValueRef *accs)
{
	LLVMValueRef zero = LLVMConstNull(g->vt);
	for (int i = 0; i < 2 * L->nvec; i++)
		cg_store(g, zero, accs[i], 64);
	int64_t k2 = L->k / 2;
	unsigned wal = (unsigned)(L->vec * 4 > 64 ? 64 : L->vec * 4);
	CgLoop l = cg_loop_begin(g, cg_i64(g, 0), cg_i64(g, k2), NULL, "k");
	for (int half = 0; half < 2; half++) {
		LLVMValueRef k = LLVMBuildAdd(g->b, LLVMBuildMul(g->b, l.iv, cg_i64(g, 2), ""), cg_i64(g, half), "");
		LLVMValueRef a = cg_splat(g, cg_load(g, g->f32, cg_gep(g, g->f32, x, k), 4), L->vec);
		LLVMValueRef bk = cg_gep(g, g->f32, wp, LLVMBuildMul(g->b, k, cg_i64(g, L->nr), ""));
		for (int v = 0; v < L->nvec; v++) {
			LLVMValueRef b = cg_load(g, g->vt, cg_gep(g, g->f32, bk, cg_i64(g, v * L->vec)), wal);
			LLVMValueRef ap = accs[half * L->nvec + v];
			cg_store(g, fma_v(g, b, a, cg_load(g, g->vt, ap, 64)), ap, 64);
		}
	}
	cg_loop_end(g, &l);
	LLVMValueRef vals[8];
	for (int v = 0; v < L->nvec; v++)
		vals[v] = LLVMBuildFAdd(g->b, cg_load(g, g->vt, accs[v], 64), cg_load(g, g->vt, accs[L->nvec + v], 64), "");
	if (L->k % 2) {
		LLVMValueRef a = cg_splat(g, cg_load(g, g->f32, cg_gep(g, g->f32, x, cg_i64(g, L->k - 1)), 4), L->vec);
		LLVMValueRef bk = cg_gep(g, g->f32, wp, cg_i64(g, (L->k - 1) * L->nr));
		for (int v = 0; v < L->nvec; v++)
			vals[v] = fma_v(g, cg_load(g, g->vt, cg_gep(g, g->f32, bk, cg_i64(g, v * L->vec)), wal), a, vals[v]);
	}
	store_rows(g, L, p, vals, 1, cg_i64(g, 0), y, other);
}

static LLVMValueRef
linear_task(Cg *g, const Lin *L, bool gemv)
{
	char key[256];
	snprintf(key, sizeof key, "linear.%s.%lld.%lld.u%d.%g.b%d%d%d", gemv ? "gemv" : "gemm", (long long)L->n,
	         (long long)L->k, L->unary ? (int)L->unary->code * 4 + (int)L->unary->ia[0] : -1,
	         L->unary ? L->unary->fa[0] : 0.0, L->binary ? (int)L->binary->code : -1, L->swap, L->other_row);
	LLVMValueRef fn = cg_kernel_find(g, key);
	if (fn)
		return fn;
	CgSave save;
	fn = cg_task_begin(g, key, &save);
	cg_kernel_add(g, key, fn);
	LLVMValueRef blk = LLVMGetParam(fn, 0);
	LLVMValueRef x = cg_slot_ptr(g, blk, 0), w = cg_slot_ptr(g, blk, 1), y = cg_slot_ptr(g, blk, 2);
	LLVMValueRef other = cg_slot_ptr(g, blk, 3), T = cg_slot_i64(g, blk, 4);
	int mr = g->t->mr;
	int nacc = gemv ? 2 * L->nvec : mr * L->nvec;
	LLVMValueRef accs[16 * 8];
	for (int i = 0; i < nacc; i++)
		accs[i] = cg_alloca(g, g->vt, "acc");
	CgLoop lp = cg_loop_begin(g, LLVMGetParam(fn, 1), LLVMGetParam(fn, 2), NULL, "panel");
	LLVMValueRef wp = cg_gep(g, g->f32, w, LLVMBuildMul(g->b, lp.iv, cg_i64(g, L->k * L->nr), ""));
	if (gemv) {
		gemv_panel(g, L, lp.iv, x, wp, y, other, accs);
	} else {
		/* full blocks of mr rows */
		LLVMValueRef full = LLVMBuildMul(g->b, LLVMBuildSDiv(g->b, T, cg_i64(g, mr), ""), cg_i64(g, mr), "");
		CgLoop lr = cg_loop_begin(g, cg_i64(g, 0), full, cg_i64(g, mr), "rows");
		micro_kernel(g, L, lp.iv, lr.iv, mr, x, wp, y, other, accs);
		cg_loop_end(g, &lr);
		/* the rest: a switch over T mod mr */
		LLVMValueRef rem = LLVMBuildSub(g->b, T, full, "");
		LLVMBasicBlockRef after = LLVMAppendBasicBlockInContext(g->c, g->fn, "rest.done");
		LLVMValueRef sw = LLVMBuildSwitch(g->b, rem, after, (unsigned)mr);
		for (int r = 1; r < mr; r++) {
			LLVMBasicBlockRef bb = LLVMAppendBasicBlockInContext(g->c, g->fn, "rest");
			LLVMAddCase(sw, cg_i64(g, r), bb);
			LLVMPositionBuilderAtEnd(g->b, bb);
			micro_kernel(g, L, lp.iv, full, r, x, wp, y, other, accs);
			LLVMBuildBr(g->b, after);
		}
		LLVMPositionBuilderAtEnd(g->b, after);
	}
	cg_loop_end(g, &lp);
	cg_task_end(g, &save);
	return fn;
}

/* A weight computed at run time (not a param, so not packed): plain loops over the
 * row-major W[N,K], with the epilogue per element. */
static void
linear_computed(Cg *g, const Op *op, const CgFuse *fu)
{
	const Func *f = g->f;
	Type xt = f->vals[op->args[0]].type, wt = f->vals[op->args[1]].type;
	int64_t n = cg_static_rows(wt), k = cg_cols(wt);
	LLVMValueRef x = cg_val_ptr(g, op->args[0]), w = cg_val_ptr(g, op->args[1]), y = cg_val_ptr(g, fu->out);
	LLVMValueRef other = fu->binary >= 0 ? cg_val_ptr(g, fu->other) : NULL;
	LLVMValueRef acc = cg_alloca(g, g->f32, "acc");
	CgLoop lr = cg_loop_begin(g, cg_i64(g, 0), cg_rows(g, xt), NULL, "row");
	CgLoop ln = cg_loop_begin(g, cg_i64(g, 0), cg_i64(g, n), NULL, "n");
	cg_store(g, cg_f32c(g, 0.0), acc, 4);
	CgLoop lk = cg_loop_begin(g, cg_i64(g, 0), cg_i64(g, k), NULL, "k");
	LLVMValueRef xv = cg_load(g, g->f32, cg_gep(g, g->f32, x, LLVMBuildAdd(g->b, LLVMBuildMul(g->b, lr.iv, cg_i64(g, k), ""), lk.iv, "")), 4);
	LLVMValueRef wv = cg_load(g, g->f32, cg_gep(g, g->f32, w, LLVMBuildAdd(g->b, LLVMBuildMul(g->b, ln.iv, cg_i64(g, k), ""), lk.iv, "")), 4);
	cg_store(g, cg_fast(LLVMBuildFAdd(g->b, cg_load(g, g->f32, acc, 4), cg_fast(LLVMBuildFMul(g->b, xv, wv, "")), "")), acc, 4);
	cg_loop_end(g, &lk);
	LLVMValueRef v = cg_load(g, g->f32, acc, 4);
	LLVMValueRef at = LLVMBuildAdd(g->b, LLVMBuildMul(g->b, lr.iv, cg_i64(g, n), ""), ln.iv, "");
	if (fu->unary >= 0)
		v = cg_unary(g, &f->ops[fu->unary], v);
	if (fu->binary >= 0) {
		LLVMValueRef o = cg_load(g, g->f32, cg_gep(g, g->f32, other, fu->other_row ? ln.iv : at), 4);
		Opcode c = f->ops[fu->binary].code;
		v = fu->bin_swap ? cg_binary(g, c, o, v) : cg_binary(g, c, v, o);
	}
	cg_store(g, v, cg_gep(g, g->f32, y, at), 4);
	cg_loop_end(g, &ln);
	cg_loop_end(g, &lr);
}

void
cg_lower_linear(Cg *g, uint32_t opi)
{
	const Func *f = g->f;
	const Op *op = &f->ops[opi];
	const CgFuse *fu = &g->plan.fuse[opi];
	Type xt = f->vals[op->args[0]].type, wt = f->vals[op->args[1]].type;
	const Op *wdef = ir_def((Func *)f, op->args[1]);
	if (wdef->code != OP_PARAM) {
		linear_computed(g, op, fu);
		return;
	}
	Lin L = { .n = cg_static_rows(wt), .k = cg_cols(wt), .nr = cg_target_nr(g->t), .vec = g->t->vec,
	          .nvec = g->t->nvec };
	L.np = (L.n + L.nr - 1) / L.nr;
	L.lastvalid = (int)(L.n - (L.np - 1) * L.nr);
	L.unary = fu->unary >= 0 ? &f->ops[fu->unary] : NULL;
	L.binary = fu->binary >= 0 ? &f->ops[fu->binary] : NULL;
	L.swap = fu->bin_swap;
	L.other_row = fu->other_row;
	bool gemv = !xt.dyn0 && cg_static_rows(xt) == 1;
	LLVMValueRef task = linear_task(g, &L, gemv);
	cg_slot_set(g, 0, cg_val_ptr(g, op->args[0]));
	cg_slot_set(g, 1, cg_param_ptr(g, (uint32_t)wdef->ia[0], CG_PANEL));
	cg_slot_set(g, 2, cg_val_ptr(g, fu->out));
	cg_slot_set(g, 3, L.binary ? cg_val_ptr(g, fu->other) : LLVMConstNull(g->ptr));
	cg_slot_set(g, 4, cg_rows(g, xt));
	cg_pfor(g, task, cg_i64(g, L.np));
}
