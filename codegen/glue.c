/* glue.c - the context API of the generated header, emitted as LLVM IR next to the
 * entries: NAME_init (caller memory), NAME_create / NAME_destroy (malloc), weight
 * loading from memory or a file with validation, NAME_reset, the parallel-for hook
 * and thread count, statistics and stat slots, run-time knobs.  Everything lives in
 * the context; nothing global is mutable (names and knob ranges are constants).
 * Context memory: CG_CTX_HDR bytes of fields (codegen.h), the knobs (doubles), the
 * stat slots (u64), then the arena, then the state (KV caches).  Only libc and the
 * runtime (blob check, thread pool) are called. */
#include "codegen/codegen.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>



typedef struct Glue {
	CgResult *r;
	LLVMContextRef c;
	LLVMModuleRef mod;
	LLVMBuilderRef b;
	LLVMTypeRef i8, i32, i64, f64, ptr, voidt;
	LLVMValueRef fn;
} Glue;

static LLVMValueRef
k64(Glue *g, uint64_t v)
{
	return LLVMConstInt(g->i64, v, 0);
}

static LLVMValueRef
k32(Glue *g, int v)
{
	return LLVMConstInt(g->i32, (unsigned long long)(int64_t)v, 1);
}

static LLVMValueRef
at(Glue *g, LLVMValueRef p, uint64_t off)
{
	LLVMValueRef i = k64(g, off);
	return LLVMBuildInBoundsGEP2(g->b, g->i8, p, &i, 1, "");
}

static LLVMValueRef
ld(Glue *g, LLVMTypeRef t, LLVMValueRef p)
{
	LLVMValueRef v = LLVMBuildLoad2(g->b, t, p, "");
	LLVMSetAlignment(v, 8);
	return v;
}

static void
st(Glue *g, LLVMValueRef v, LLVMValueRef p)
{
	LLVMSetAlignment(LLVMBuildStore(g->b, v, p), 8);
}

/* Declares (once) an external function. */
static LLVMValueRef
ext(Glue *g, const char *name, LLVMTypeRef ret, LLVMTypeRef *params, unsigned n, LLVMTypeRef *fty)
{
	*fty = LLVMFunctionType(ret, params, n, 0);
	LLVMValueRef f = LLVMGetNamedFunction(g->mod, name);
	return f ? f : LLVMAddFunction(g->mod, name, *fty);
}

static LLVMValueRef
call(Glue *g, const char *name, LLVMTypeRef ret, LLVMTypeRef *pt, LLVMValueRef *args, unsigned n)
{
	LLVMTypeRef fty;
	LLVMValueRef f = ext(g, name, ret, pt, n, &fty);
	return LLVMBuildCall2(g->b, fty, f, args, n, "");
}

static LLVMValueRef
begin(Glue *g, const char *suffix, LLVMTypeRef ret, LLVMTypeRef *params, unsigned n)
{
	char name[256];
	snprintf(name, sizeof name, "%s_%s", g->r->m->name, suffix);
	g->fn = LLVMAddFunction(g->mod, name, LLVMFunctionType(ret, params, n, 0));
	LLVMPositionBuilderAtEnd(g->b, LLVMAppendBasicBlockInContext(g->c, g->fn, "entry"));
	return g->fn;
}

static LLVMBasicBlockRef
bb(Glue *g, const char *name)
{
	return LLVMAppendBasicBlockInContext(g->c, g->fn, name);
}

/* if (cond) return v; */
static void
ret_if(Glue *g, LLVMValueRef cond, LLVMValueRef v)
{
	LLVMBasicBlockRef yes = bb(g, "ret"), no = bb(g, "cont");
	LLVMBuildCondBr(g->b, cond, yes, no);
	LLVMPositionBuilderAtEnd(g->b, yes);
	if (v)
		LLVMBuildRet(g->b, v);
	else
		LLVMBuildRetVoid(g->b);
	LLVMPositionBuilderAtEnd(g->b, no);
}

/* Status of a context pointer: ELIDE_ERR_ARG unless it is one of ours. */
static LLVMValueRef
bad_ctx(Glue *g, LLVMValueRef ctx)
{
	LLVMBasicBlockRef cur = LLVMGetInsertBlock(g->b), chk = bb(g, "magic"), done = bb(g, "checked");
	LLVMBuildCondBr(g->b, LLVMBuildIsNull(g->b, ctx, ""), done, chk);
	LLVMPositionBuilderAtEnd(g->b, chk);
	LLVMValueRef bad = LLVMBuildICmp(g->b, LLVMIntNE, ld(g, g->i64, ctx), k64(g, CG_CTX_MAGIC_VALUE), "");
	LLVMBuildBr(g->b, done);
	LLVMPositionBuilderAtEnd(g->b, done);
	LLVMValueRef phi = LLVMBuildPhi(g->b, LLVMInt1TypeInContext(g->c), "");
	LLVMValueRef vals[2] = { LLVMConstInt(LLVMInt1TypeInContext(g->c), 1, 0), bad };
	LLVMBasicBlockRef from[2] = { cur, chk };
	LLVMAddIncoming(phi, vals, from, 2);
	return phi;
}

/* Takes the context's busy flag (atomic exchange); true when another call holds it. */
static LLVMValueRef
take_busy(Glue *g, LLVMValueRef ctx)
{
	LLVMValueRef was = LLVMBuildAtomicRMW(g->b, LLVMAtomicRMWBinOpXchg, at(g, ctx, CG_CTX_BUSY), k64(g, 1),
	                                      LLVMAtomicOrderingAcquire, 0);
	return LLVMBuildICmp(g->b, LLVMIntNE, was, k64(g, 0), "");
}

/* Gives the busy flag back (release store). */
static void
give_busy(Glue *g, LLVMValueRef ctx)
{
	LLVMValueRef s = LLVMBuildStore(g->b, k64(g, 0), at(g, ctx, CG_CTX_BUSY));
	LLVMSetOrdering(s, LLVMAtomicOrderingRelease);
	LLVMSetAlignment(s, 8);
}

static void
emit_memset(Glue *g, LLVMValueRef p, uint64_t n)
{
	LLVMBuildMemSet(g->b, p, LLVMConstInt(g->i8, 0, 0), k64(g, n), 64);
}

/* Destroys the thread pool the context created, if any. */
static void
destroy_owned_pool(Glue *g, LLVMValueRef ctx)
{
	LLVMTypeRef pt[1] = { g->ptr };
	LLVMValueRef pool = ld(g, g->ptr, at(g, ctx, CG_CTX_OWNED_POOL));
	LLVMBasicBlockRef yes = bb(g, "pool"), no = bb(g, "nopool");
	LLVMBuildCondBr(g->b, LLVMBuildIsNull(g->b, pool, ""), no, yes);
	LLVMPositionBuilderAtEnd(g->b, yes);
	call(g, "elide_pool_destroy", g->voidt, pt, &pool, 1);
	LLVMBuildBr(g->b, no);
	LLVMPositionBuilderAtEnd(g->b, no);
}

/* Releases the blob file the context maps, if any (elide_blob_unmap is safe on a
 * zeroed mapping). */
static void
release_mapping(Glue *g, LLVMValueRef ctx)
{
	LLVMTypeRef pt[1] = { g->ptr };
	LLVMValueRef a[1] = { at(g, ctx, CG_CTX_MAPPING) };
	call(g, "elide_blob_unmap", g->voidt, pt, a, 1);
}

/* Points the context at a validated payload and counts the load. */
static void
use_payload(Glue *g, LLVMValueRef ctx, LLVMValueRef payload)
{
	st(g, payload, at(g, ctx, CG_CTX_WEIGHTS));
	LLVMValueRef sp = at(g, ctx, CG_CTX_STATS + 8 * 3);
	st(g, LLVMBuildAdd(g->b, ld(g, g->i64, sp), k64(g, 1), ""), sp);
}

/* NAME_init (caller memory) and NAME_create (malloc'ed). */
static void
emit_init_create(Glue *g, LLVMValueRef embedded)
{
	uint64_t size = g->r->ctx_size;
	/* NAME_ctx *NAME_init(void *mem, size_t size) */
	LLVMTypeRef p2[2] = { g->ptr, g->i64 };
	LLVMValueRef init = begin(g, "init", g->ptr, p2, 2);
	LLVMValueRef mem = LLVMGetParam(init, 0), n = LLVMGetParam(init, 1);
	ret_if(g, LLVMBuildIsNull(g->b, mem, ""), LLVMConstNull(g->ptr));
	ret_if(g, LLVMBuildICmp(g->b, LLVMIntULT, n, k64(g, size), ""), LLVMConstNull(g->ptr));
	ret_if(g, LLVMBuildICmp(g->b, LLVMIntNE, LLVMBuildAnd(g->b, LLVMBuildPtrToInt(g->b, mem, g->i64, ""), k64(g, 63), ""),
	                        k64(g, 0), ""),
	       LLVMConstNull(g->ptr));
	emit_memset(g, mem, size);
	st(g, k64(g, CG_CTX_MAGIC_VALUE), mem);
	for (uint32_t k = 0; k < g->r->m->nknobs; k++) /* the knobs' defaults */
		st(g, LLVMConstReal(g->f64, g->r->m->knobs[k].dflt), at(g, mem, g->r->knob_off + 8 * k));
	if (embedded) {
		/* the blob was checked when it was built: its payload follows the header */
		st(g, at(g, embedded, ELIDE_BLOB_HEADER_SIZE), at(g, mem, CG_CTX_WEIGHTS));
	}
	LLVMBuildRet(g->b, mem);

	/* NAME_ctx *NAME_create(void) */
	begin(g, "create", g->ptr, NULL, 0);
	uint64_t asize = (size + 63) & ~(uint64_t)63;
	LLVMTypeRef pa[1] = { g->i64 };
	LLVMValueRef aa[1] = { k64(g, asize) };
	LLVMValueRef m = call(g, "elide_alloc_context", g->ptr, pa, aa, 1);
	ret_if(g, LLVMBuildIsNull(g->b, m, ""), LLVMConstNull(g->ptr));
	LLVMValueRef ia[2] = { m, k64(g, asize) };
	LLVMValueRef ctx = LLVMBuildCall2(g->b, LLVMGlobalGetValueType(init), init, ia, 2, "");
	st(g, m, at(g, ctx, CG_CTX_OWNED_MEM));
	LLVMBuildRet(g->b, ctx);
}

/* NAME_destroy and NAME_reset. */
static void
emit_destroy_reset(Glue *g)
{
	const CgResult *r = g->r;
	LLVMValueRef ctx;
	/* void NAME_destroy(NAME_ctx *) */
	LLVMTypeRef p1[1] = { g->ptr };
	LLVMValueRef destroy = begin(g, "destroy", g->voidt, p1, 1);
	ctx = LLVMGetParam(destroy, 0);
	ret_if(g, bad_ctx(g, ctx), NULL);
	destroy_owned_pool(g, ctx);
	release_mapping(g, ctx);
	LLVMValueRef owned = ld(g, g->ptr, at(g, ctx, CG_CTX_OWNED_MEM));
	st(g, k64(g, 0), ctx);
	call(g, "free", g->voidt, p1, &owned, 1);
	LLVMBuildRetVoid(g->b);

	/* int NAME_reset(NAME_ctx *): clears the state (KV caches) and the statistics of
	 * the calls (calls, tokens, layers run, the stat slots); the knobs and the count
	 * of weight loads stay */
	LLVMValueRef reset = begin(g, "reset", g->i32, p1, 1);
	ctx = LLVMGetParam(reset, 0);
	ret_if(g, bad_ctx(g, ctx), k32(g, ELIDE_ERR_ARG));
	ret_if(g, take_busy(g, ctx), k32(g, ELIDE_ERR_BUSY));
	if (r->state_size)
		emit_memset(g, at(g, ctx, r->arena_off + r->arena_size), r->state_size);
	LLVMBuildMemSet(g->b, at(g, ctx, CG_CTX_STATS), LLVMConstInt(g->i8, 0, 0), k64(g, 8 * 3), 8);
	if (r->m->nstats) /* 8-aligned, not 64 */
		LLVMBuildMemSet(g->b, at(g, ctx, r->stat_off), LLVMConstInt(g->i8, 0, 0), k64(g, 8 * (uint64_t)r->m->nstats), 8);
	give_busy(g, ctx);
	LLVMBuildRet(g->b, k32(g, ELIDE_OK));
}

/* NAME_load_weights_mem_abi and NAME_load_weights_abi.  Their last argument is the
 * NAME_ABI_HASH of the header the caller was compiled with (the header's inline
 * NAME_load_weights and NAME_load_weights_mem pass it): a header of another compile
 * gets ELIDE_ERR_ABI before anything is read. */
static void
emit_loaders(Glue *g)
{
	const CgResult *r = g->r;
	LLVMValueRef ctx;
	/* int NAME_load_weights_mem_abi(NAME_ctx *, const void *blob, size_t size, uint64_t abi):
	 * validated, then used in place (the caller keeps it alive) */
	LLVMTypeRef p3[4] = { g->ptr, g->ptr, g->i64, g->i64 };
	LLVMValueRef lm = begin(g, "load_weights_mem_abi", g->i32, p3, 4);
	ctx = LLVMGetParam(lm, 0);
	ret_if(g, LLVMBuildICmp(g->b, LLVMIntNE, LLVMGetParam(lm, 3), k64(g, r->abi_hash), ""), k32(g, ELIDE_ERR_ABI));
	ret_if(g, bad_ctx(g, ctx), k32(g, ELIDE_ERR_ARG));
	{
		LLVMValueRef payload = LLVMBuildAlloca(g->b, g->ptr, "payload");
		LLVMTypeRef pt[6] = { g->ptr, g->i64, g->i64, g->i64, g->ptr, g->ptr };
		LLVMValueRef a[6] = { LLVMGetParam(lm, 1), LLVMGetParam(lm, 2), k64(g, r->model_hash),
			              k64(g, r->blob_size - ELIDE_BLOB_HEADER_SIZE), payload, LLVMConstNull(g->ptr) };
		LLVMValueRef s = call(g, "elide_blob_check", g->i32, pt, a, 6);
		ret_if(g, LLVMBuildICmp(g->b, LLVMIntNE, s, k32(g, ELIDE_OK), ""), s);
		ret_if(g, take_busy(g, ctx), k32(g, ELIDE_ERR_BUSY));
		release_mapping(g, ctx);
		use_payload(g, ctx, ld(g, g->ptr, payload));
		give_busy(g, ctx);
		LLVMBuildRet(g->b, k32(g, ELIDE_OK));
	}

	/* int NAME_load_weights_abi(NAME_ctx *, const char *path, uint64_t abi): reads the
	 * file into private memory (elide_blob_open validates it; a copy, so the file may
	 * change afterwards); the context releases it on destroy or reload */
	LLVMTypeRef p2p[3] = { g->ptr, g->ptr, g->i64 };
	LLVMValueRef lf = begin(g, "load_weights_abi", g->i32, p2p, 3);
	ctx = LLVMGetParam(lf, 0);
	ret_if(g, LLVMBuildICmp(g->b, LLVMIntNE, LLVMGetParam(lf, 2), k64(g, r->abi_hash), ""), k32(g, ELIDE_ERR_ABI));
	ret_if(g, bad_ctx(g, ctx), k32(g, ELIDE_ERR_ARG));
	ret_if(g, LLVMBuildIsNull(g->b, LLVMGetParam(lf, 1), ""), k32(g, ELIDE_ERR_ARG));
	{
		LLVMTypeRef mty = LLVMArrayType(g->i64, 3); /* elide_mapping: data, size, kind */
		LLVMValueRef map = LLVMBuildAlloca(g->b, mty, "mapping");
		LLVMSetAlignment(map, 8);
		LLVMBuildMemSet(g->b, map, LLVMConstInt(g->i8, 0, 0), k64(g, 24), 8);
		LLVMValueRef payload = LLVMBuildAlloca(g->b, g->ptr, "payload");
		LLVMTypeRef pt[6] = { g->ptr, g->i64, g->i64, g->ptr, g->ptr, g->ptr };
		LLVMValueRef a[6] = { LLVMGetParam(lf, 1), k64(g, r->model_hash),
			              k64(g, r->blob_size - ELIDE_BLOB_HEADER_SIZE), map, payload, LLVMConstNull(g->ptr) };
		LLVMValueRef s = call(g, "elide_blob_open", g->i32, pt, a, 6);
		ret_if(g, LLVMBuildICmp(g->b, LLVMIntNE, s, k32(g, ELIDE_OK), ""), s);
		LLVMBasicBlockRef busy = bb(g, "busy"), free_ = bb(g, "free");
		LLVMBuildCondBr(g->b, take_busy(g, ctx), busy, free_);
		LLVMPositionBuilderAtEnd(g->b, busy); /* another call runs: drop the new copy */
		LLVMTypeRef upt[1] = { g->ptr };
		call(g, "elide_blob_unmap", g->voidt, upt, &map, 1);
		LLVMBuildRet(g->b, k32(g, ELIDE_ERR_BUSY));
		LLVMPositionBuilderAtEnd(g->b, free_);
		release_mapping(g, ctx);
		LLVMBuildMemCpy(g->b, at(g, ctx, CG_CTX_MAPPING), 8, map, 8, k64(g, 24));
		use_payload(g, ctx, ld(g, g->ptr, payload));
		give_busy(g, ctx);
		LLVMBuildRet(g->b, k32(g, ELIDE_OK));
	}
}

/* NAME_set_parallel_for and NAME_set_threads. */
static void
emit_threads(Glue *g)
{
	LLVMValueRef ctx;
	/* void NAME_set_parallel_for(NAME_ctx *, fn, void *pool) */
	LLVMTypeRef p3[3] = { g->ptr, g->ptr, g->ptr };
	LLVMValueRef spf = begin(g, "set_parallel_for", g->voidt, p3, 3);
	ctx = LLVMGetParam(spf, 0);
	ret_if(g, bad_ctx(g, ctx), NULL);
	st(g, LLVMGetParam(spf, 1), at(g, ctx, CG_CTX_PFOR));
	st(g, LLVMGetParam(spf, 2), at(g, ctx, CG_CTX_POOL));
	LLVMBuildRetVoid(g->b);

	/* int NAME_set_threads(NAME_ctx *, int n): 1 serial, n > 1 a runtime pool of n
	 * threads, 0 the ELIDE_THREADS environment variable (elide_pool_create(0)) */
	LLVMTypeRef pti[2] = { g->ptr, g->i32 };
	LLVMValueRef sth = begin(g, "set_threads", g->i32, pti, 2);
	ctx = LLVMGetParam(sth, 0);
	ret_if(g, bad_ctx(g, ctx), k32(g, ELIDE_ERR_ARG));
	destroy_owned_pool(g, ctx);
	st(g, LLVMConstNull(g->ptr), at(g, ctx, CG_CTX_OWNED_POOL));
	st(g, LLVMConstNull(g->ptr), at(g, ctx, CG_CTX_PFOR));
	st(g, LLVMConstNull(g->ptr), at(g, ctx, CG_CTX_POOL));
	LLVMValueRef nt = LLVMGetParam(sth, 1);
	ret_if(g, LLVMBuildICmp(g->b, LLVMIntSLT, nt, k32(g, 0), ""), k32(g, ELIDE_ERR_ARG));
	ret_if(g, LLVMBuildICmp(g->b, LLVMIntEQ, nt, k32(g, 1), ""), k32(g, ELIDE_OK));
	LLVMTypeRef ip[1] = { g->i32 };
	LLVMValueRef np = call(g, "elide_pool_create", g->ptr, ip, &nt, 1);
	ret_if(g, LLVMBuildIsNull(g->b, np, ""), k32(g, ELIDE_ERR_NOMEM));
	st(g, np, at(g, ctx, CG_CTX_OWNED_POOL));
	st(g, np, at(g, ctx, CG_CTX_POOL));
	LLVMTypeRef fpt[4] = { g->ptr, g->i64, g->ptr, g->ptr };
	LLVMTypeRef fty;
	LLVMValueRef pf = ext(g, "elide_pool_parallel_for", g->voidt, fpt, 4, &fty);
	st(g, pf, at(g, ctx, CG_CTX_PFOR));
	LLVMBuildRet(g->b, k32(g, ELIDE_OK));
}

/* NAME_get_stats and NAME_abi_hash. */
static void
emit_info(Glue *g)
{
	LLVMValueRef ctx;
	LLVMTypeRef p2p[2] = { g->ptr, g->ptr };
	/* void NAME_get_stats(const NAME_ctx *, NAME_stats *out) */
	LLVMValueRef gs = begin(g, "get_stats", g->voidt, p2p, 2);
	ctx = LLVMGetParam(gs, 0);
	ret_if(g, LLVMBuildIsNull(g->b, LLVMGetParam(gs, 1), ""), NULL);
	ret_if(g, bad_ctx(g, ctx), NULL);
	LLVMBuildMemCpy(g->b, LLVMGetParam(gs, 1), 8, at(g, ctx, CG_CTX_STATS), 8, k64(g, 8 * CG_NSTATS));
	LLVMBuildRetVoid(g->b);

	/* uint64_t NAME_abi_hash(void) */
	begin(g, "abi_hash", g->i64, NULL, 0);
	LLVMBuildRet(g->b, k64(g, g->r->abi_hash));
}

/* A private constant C string. */
static LLVMValueRef
cstr(Glue *g, const char *s)
{
	LLVMValueRef init = LLVMConstStringInContext2(g->c, s, strlen(s), 0);
	LLVMValueRef gv = LLVMAddGlobal(g->mod, LLVMTypeOf(init), "name");
	LLVMSetInitializer(gv, init);
	LLVMSetGlobalConstant(gv, 1);
	LLVMSetLinkage(gv, LLVMPrivateLinkage);
	LLVMSetUnnamedAddr(gv, 1);
	return gv;
}

/* A private constant array of n values of type t. */
static LLVMValueRef
const_array(Glue *g, LLVMTypeRef t, LLVMValueRef *vals, uint32_t n, const char *name)
{
	LLVMValueRef init = LLVMConstArray2(t, vals, n);
	LLVMValueRef gv = LLVMAddGlobal(g->mod, LLVMTypeOf(init), name);
	LLVMSetInitializer(gv, init);
	LLVMSetGlobalConstant(gv, 1);
	LLVMSetLinkage(gv, LLVMPrivateLinkage);
	return gv;
}

/* const char *NAME_<suffix>(int i): names[i], NULL outside [0, n). */
static void
emit_name_fn(Glue *g, const char *suffix, const char *const *names, uint32_t n)
{
	LLVMTypeRef pi[1] = { g->i32 };
	LLVMValueRef fn = begin(g, suffix, g->ptr, pi, 1);
	LLVMValueRef i = LLVMGetParam(fn, 0);
	ret_if(g, LLVMBuildICmp(g->b, LLVMIntUGE, i, k32(g, (int)n), ""), LLVMConstNull(g->ptr));
	LLVMValueRef *v = xcalloc(n + 1, sizeof *v);
	for (uint32_t k = 0; k < n; k++)
		v[k] = cstr(g, names[k]);
	LLVMValueRef tab = const_array(g, g->ptr, v, n, "names");
	free(v);
	LLVMValueRef idx = LLVMBuildZExt(g->b, i, g->i64, "");
	LLVMBuildRet(g->b, ld(g, g->ptr, LLVMBuildInBoundsGEP2(g->b, g->ptr, tab, &idx, 1, "")));
}

/* NAME_set_knob, NAME_get_knob, NAME_knob_name. */
static void
emit_knobs(Glue *g)
{
	const Module *m = g->r->m;
	uint32_t n = m->nknobs;
	LLVMValueRef ctx;
	/* int NAME_set_knob(NAME_ctx *, int knob, double v): ELIDE_ERR_ARG for an unknown
	 * knob, a value outside [min, max] (NaN included), or a fraction for an i32 knob */
	LLVMTypeRef ps[3] = { g->ptr, g->i32, g->f64 };
	LLVMValueRef sk = begin(g, "set_knob", g->i32, ps, 3);
	ctx = LLVMGetParam(sk, 0);
	LLVMValueRef k = LLVMGetParam(sk, 1), v = LLVMGetParam(sk, 2);
	ret_if(g, bad_ctx(g, ctx), k32(g, ELIDE_ERR_ARG));
	ret_if(g, LLVMBuildICmp(g->b, LLVMIntUGE, k, k32(g, (int)n), ""), k32(g, ELIDE_ERR_ARG));
	if (n) {
		LLVMValueRef *lo = xcalloc(n, sizeof *lo), *hi = xcalloc(n, sizeof *hi), *in = xcalloc(n, sizeof *in);
		for (uint32_t j = 0; j < n; j++) {
			lo[j] = LLVMConstReal(g->f64, m->knobs[j].lo);
			hi[j] = LLVMConstReal(g->f64, m->knobs[j].hi);
			in[j] = k32(g, m->knobs[j].dtype == DT_I32);
		}
		LLVMValueRef tlo = const_array(g, g->f64, lo, n, "knob.min"), thi = const_array(g, g->f64, hi, n, "knob.max");
		LLVMValueRef tin = const_array(g, g->i32, in, n, "knob.int");
		free(lo);
		free(hi);
		free(in);
		LLVMValueRef idx = LLVMBuildZExt(g->b, k, g->i64, "");
		LLVMValueRef vlo = ld(g, g->f64, LLVMBuildInBoundsGEP2(g->b, g->f64, tlo, &idx, 1, ""));
		LLVMValueRef vhi = ld(g, g->f64, LLVMBuildInBoundsGEP2(g->b, g->f64, thi, &idx, 1, ""));
		LLVMValueRef isint = ld(g, g->i32, LLVMBuildInBoundsGEP2(g->b, g->i32, tin, &idx, 1, ""));
		LLVMValueRef inside = LLVMBuildAnd(g->b, LLVMBuildFCmp(g->b, LLVMRealOGE, v, vlo, ""),
		                                   LLVMBuildFCmp(g->b, LLVMRealOLE, v, vhi, ""), "");
		ret_if(g, LLVMBuildNot(g->b, inside, ""), k32(g, ELIDE_ERR_ARG));
		unsigned id = LLVMLookupIntrinsicID("llvm.trunc", 10);
		LLVMTypeRef ovl[1] = { g->f64 };
		LLVMValueRef tf = LLVMGetIntrinsicDeclaration(g->mod, id, ovl, 1);
		LLVMValueRef tv = LLVMBuildCall2(g->b, LLVMIntrinsicGetType(g->c, id, ovl, 1), tf, &v, 1, "");
		LLVMValueRef frac = LLVMBuildFCmp(g->b, LLVMRealUNE, tv, v, "");
		ret_if(g, LLVMBuildAnd(g->b, frac, LLVMBuildICmp(g->b, LLVMIntNE, isint, k32(g, 0), ""), ""),
		       k32(g, ELIDE_ERR_ARG));
		LLVMValueRef off = LLVMBuildAdd(g->b, k64(g, g->r->knob_off), LLVMBuildMul(g->b, idx, k64(g, 8), ""), "");
		st(g, v, LLVMBuildInBoundsGEP2(g->b, g->i8, ctx, &off, 1, ""));
		LLVMBuildRet(g->b, k32(g, ELIDE_OK));
	} else {
		LLVMBuildRet(g->b, k32(g, ELIDE_ERR_ARG));
	}

	/* double NAME_get_knob(const NAME_ctx *, int knob): NaN for an unknown knob */
	LLVMTypeRef pg[2] = { g->ptr, g->i32 };
	LLVMValueRef gk = begin(g, "get_knob", g->f64, pg, 2);
	ctx = LLVMGetParam(gk, 0);
	k = LLVMGetParam(gk, 1);
	LLVMValueRef nan = LLVMConstReal(g->f64, NAN);
	ret_if(g, bad_ctx(g, ctx), nan);
	ret_if(g, LLVMBuildICmp(g->b, LLVMIntUGE, k, k32(g, (int)n), ""), nan);
	LLVMValueRef off = LLVMBuildAdd(g->b, k64(g, g->r->knob_off),
	                                LLVMBuildMul(g->b, LLVMBuildZExt(g->b, k, g->i64, ""), k64(g, 8), ""), "");
	LLVMBuildRet(g->b, ld(g, g->f64, LLVMBuildInBoundsGEP2(g->b, g->i8, ctx, &off, 1, "")));

	const char **names = xcalloc(n + 1, sizeof *names);
	for (uint32_t j = 0; j < n; j++)
		names[j] = m->knobs[j].name;
	emit_name_fn(g, "knob_name", names, n);
	free(names);
}

/* NAME_stat and NAME_stat_name. */
static void
emit_stat_slots(Glue *g)
{
	const Module *m = g->r->m;
	uint32_t n = m->nstats;
	/* int64_t NAME_stat(const NAME_ctx *, int slot): -1 for an unknown slot */
	LLVMTypeRef pg[2] = { g->ptr, g->i32 };
	LLVMValueRef fn = begin(g, "stat", g->i64, pg, 2);
	LLVMValueRef ctx = LLVMGetParam(fn, 0), k = LLVMGetParam(fn, 1);
	ret_if(g, bad_ctx(g, ctx), k64(g, (uint64_t)-1));
	ret_if(g, LLVMBuildICmp(g->b, LLVMIntUGE, k, k32(g, (int)n), ""), k64(g, (uint64_t)-1));
	LLVMValueRef off = LLVMBuildAdd(g->b, k64(g, g->r->stat_off),
	                                LLVMBuildMul(g->b, LLVMBuildZExt(g->b, k, g->i64, ""), k64(g, 8), ""), "");
	LLVMBuildRet(g->b, ld(g, g->i64, LLVMBuildInBoundsGEP2(g->b, g->i8, ctx, &off, 1, "")));

	const char **names = xcalloc(n + 1, sizeof *names);
	for (uint32_t j = 0; j < n; j++)
		names[j] = m->stats[j].name;
	emit_name_fn(g, "stat_name", names, n);
	free(names);
}

void
cg_emit_glue(CgResult *r, LLVMBuilderRef b, LLVMValueRef embedded)
{
	Glue G = { .r = r, .c = r->llctx, .mod = r->mod, .b = b };
	Glue *g = &G;
	g->i8 = LLVMInt8TypeInContext(g->c);
	g->i32 = LLVMInt32TypeInContext(g->c);
	g->i64 = LLVMInt64TypeInContext(g->c);
	g->f64 = LLVMDoubleTypeInContext(g->c);
	g->ptr = LLVMPointerTypeInContext(g->c, 0);
	g->voidt = LLVMVoidTypeInContext(g->c);
	emit_init_create(g, embedded);
	emit_destroy_reset(g);
	emit_loaders(g);
	emit_threads(g);
	emit_info(g);
	emit_knobs(g);
	emit_stat_slots(g);
}
