/* manifest.c - NAME.json: what was compiled.  Target and kernel geometry, region
 * sizes, the weight regions (layout, offset, bytes), the run-time knobs (name, dtype,
 * default, range) and stat slots, per entry the ops, FLOPs (at one key, and per
 * further key attended) and weight bytes per token of the full path and of every
 * layer region on it, and of every path that ends in a 'ret' with its exit site (0:
 * none) and layers run (cost.c), and the policy's statements as data (their typed
 * options) with what each did.  Every field: docs/manifest.md. */
#include "codegen/codegen.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *
layout_name(CgLayout l)
{
	switch (l) {
	case CG_ROWMAJOR: return "row_major";
	case CG_PANEL: return "panel";
	case CG_ROPE: return "rope_table";
	case CG_QPANEL: return "quant_panel";
	case CG_QROWS: return "quant_rows";
	case CG_BPANEL: return "bf16_panel";
	case CG_BROWS: return "bf16_rows";
	}
	return "?";
}

/* How a layer's attention op attends (docs/manifest.md "Attention per position"). */
static cJSON *
attention_form(const Module *m, const Op *op)
{
	cJSON *a = cJSON_CreateObject();
	const State *st = op->ia[2] >= 0 && op->ia[2] < m->nstates ? &m->states[op->ia[2]] : NULL;
	cJSON_AddStringToObject(a, "form", op->code == OP_ATTENTION_QUEST ? "quest"
	                                   : op->code == OP_ATTENTION_BLOCK ? "block" : "dense");
	cJSON_AddNumberToObject(a, "kv_heads", (double)op->ia[1]);
	cJSON_AddBoolToObject(a, "cached", st != NULL);
	if (op->code == OP_ATTENTION_QUEST) {
		cJSON_AddNumberToObject(a, "page", st ? (double)st->page : 0);
		cJSON_AddNumberToObject(a, "budget", (double)op->ia[3]);
		cJSON_AddNumberToObject(a, "sinks", (double)op->ia[4]);
		cJSON_AddNumberToObject(a, "window", (double)op->ia[5]);
	} else if (op->code == OP_ATTENTION_BLOCK) {
		cJSON_AddNumberToObject(a, "block", (double)op->ia[3]);
		cJSON_AddNumberToObject(a, "topk", (double)op->ia[4]);
		cJSON_AddNumberToObject(a, "gamma", op->ia[4] ? 0.0 : (double)op->fa[0]);
		cJSON_AddNumberToObject(a, "min_tokens", (double)op->ia[5]);
	}
	if (op->code != OP_ATTENTION && op->ia[6] > 0 && op->ia[6] <= m->nstats)
		cJSON_AddStringToObject(a, "stat", m->stats[op->ia[6] - 1].name);
	return a;
}

static void
hex(cJSON *o, const char *k, uint64_t v)
{
	char b[32];
	snprintf(b, sizeof b, "0x%016llx", (unsigned long long)v);
	cJSON_AddStringToObject(o, k, b);
}

/* ---- the policy as data: each statement as written, with its options and the
 * effects the passes recorded (PolicyEffect) ---- */

static cJSON *
policy_value(const PolicyVal *v)
{
	switch (v->kind) {
	case PV_NUM:
	case PV_FRAC: /* a kept fraction written num/den: its value */
		return cJSON_CreateNumber(v->num);
	case PV_RANGE: {
		cJSON *a = cJSON_CreateArray();
		cJSON_AddItemToArray(a, cJSON_CreateNumber((double)v->lo));
		cJSON_AddItemToArray(a, cJSON_CreateNumber((double)v->hi));
		return a;
	}
	case PV_LIST: {
		cJSON *a = cJSON_CreateArray();
		for (uint32_t i = 0; i < v->nints; i++)
			cJSON_AddItemToArray(a, cJSON_CreateNumber((double)v->ints[i]));
		return a;
	}
	case PV_NAMES: {
		cJSON *a = cJSON_CreateArray();
		for (uint32_t i = 0; i < v->nstrs; i++)
			cJSON_AddItemToArray(a, cJSON_CreateString(v->strs[i] ? v->strs[i] : ""));
		return a;
	}
	case PV_STRING:
	case PV_IDENT:
		return cJSON_CreateString(v->str ? v->str : "");
	}
	return cJSON_CreateNull();
}

static bool
same_loc(Loc a, Loc b)
{
	return a.line == b.line && a.col == b.col && (a.file == b.file || (a.file && b.file && strcmp(a.file, b.file) == 0));
}

static bool
loc_before(Loc a, Loc b)
{
	return a.line < b.line || (a.line == b.line && a.col < b.col);
}

static cJSON *
policy_statements(const Module *m)
{
	cJSON *arr = cJSON_CreateArray();
	for (uint32_t i = 0; i < m->nstmts_written; i++) {
		const PolicyStmt *s = &m->stmts_written[i];
		cJSON *o = cJSON_CreateObject();
		cJSON_AddStringToObject(o, "verb", ir_vocab_name(&ir_verb_vocab, (int)s->verb));
		const char *subject = ir_policy_subject_name(s);
		if (subject)
			cJSON_AddStringToObject(o, "subject", subject);
		else
			cJSON_AddNullToObject(o, "subject");
		cJSON_AddNumberToObject(o, "line", s->loc.line);
		/* the options written, in the order written (key_loc), with their typed values */
		cJSON *opts = cJSON_AddObjectToObject(o, "options");
		int keys[PK_COUNT], nkeys = 0;
		for (int k = 0; k < PK_COUNT; k++)
			if (ir_policy_given(s, (PolicyKey)k))
				keys[nkeys++] = k;
		for (int a = 1; a < nkeys; a++) /* insertion sort by location */
			for (int b = a; b > 0 && loc_before(s->key_loc[keys[b]], s->key_loc[keys[b - 1]]); b--) {
				int t = keys[b];
				keys[b] = keys[b - 1];
				keys[b - 1] = t;
			}
		for (int i = 0; i < nkeys; i++) {
			PolicyVal v = ir_policy_get(s, (PolicyKey)keys[i]);
			cJSON_AddItemToObject(opts, ir_policy_keys[keys[i]].word, policy_value(&v));
		}
		/* a pass that realises a statement removes it from the policy */
		bool left = false;
		for (uint32_t k = 0; m->policy && k < m->policy->nstmts && !left; k++)
			left = same_loc(m->policy->stmts[k].loc, s->loc);
		cJSON_AddBoolToObject(o, "applied", !left);
		cJSON *eff = cJSON_AddArrayToObject(o, "effects");
		for (uint32_t k = 0; k < m->neffects; k++) {
			const PolicyEffect *e = &m->effects[k];
			if (!same_loc(e->stmt, s->loc))
				continue;
			cJSON *x = cJSON_CreateObject();
			cJSON_AddStringToObject(x, "what", e->what);
			cJSON_AddNumberToObject(x, "layer", e->layer);
			cJSON_AddNumberToObject(x, "before", (double)e->before);
			cJSON_AddNumberToObject(x, "after", (double)e->after);
			cJSON_AddItemToArray(eff, x);
		}
		cJSON_AddItemToArray(arr, o);
	}
	return arr;
}

char *
cg_manifest_text(const CgResult *r)
{
	const Module *m = r->m;
	cJSON *root = cJSON_CreateObject();
	cJSON_AddStringToObject(root, "model", m->name);
	cJSON_AddStringToObject(root, "policy", m->policy && m->policy->name ? m->policy->name : "dense");
	cJSON *t = cJSON_AddObjectToObject(root, "target");
	cJSON_AddStringToObject(t, "triple", r->target->triple);
	cJSON_AddStringToObject(t, "cpu", r->target->cpu);
	cJSON_AddNumberToObject(t, "vector_floats", r->target->vec);
	cJSON_AddNumberToObject(t, "panel_width", cg_target_nr(r->target));
	cJSON_AddNumberToObject(t, "gemm_rows", r->target->mr);
	hex(root, "abi_hash", r->abi_hash);
	hex(root, "model_hash", r->model_hash);
	uint64_t wh = 0;
	for (uint32_t i = 0; i < m->nparams; i++)
		wh = hash_bytes(&m->params[i].hash, sizeof m->params[i].hash, wh);
	hex(root, "weights_hash", wh);
	/* exact element count of the params (after pruning), and what the passes noted */
	int64_t nparams = 0;
	for (uint32_t i = 0; i < m->nparams; i++)
		nparams += ir_type_numel(m->params[i].type);
	cJSON_AddNumberToObject(root, "parameters", (double)nparams);
	if (m->manifest_notes)
		cJSON_AddStringToObject(root, "notes", m->manifest_notes);
	cJSON_AddItemToObject(root, "policy_statements", policy_statements(m));
	cJSON *reg = cJSON_AddObjectToObject(root, "regions");
	cJSON_AddNumberToObject(reg, "context", (double)r->ctx_size);
	cJSON_AddNumberToObject(reg, "arena", (double)r->arena_size);
	cJSON_AddNumberToObject(reg, "state", (double)r->state_size);
	cJSON_AddNumberToObject(reg, "weights", (double)r->blob_size);
	cJSON *ws = cJSON_AddArrayToObject(root, "weights");
	for (uint32_t i = 0; i < r->weights.nregions; i++) {
		const CgRegion *g = &r->weights.regions[i];
		cJSON *o = cJSON_CreateObject();
		cJSON_AddStringToObject(o, "name", g->param >= 0 ? m->params[g->param].name : "rope");
		cJSON_AddStringToObject(o, "layout", layout_name(g->layout));
		if (g->param >= 0) {
			const Param *p = &m->params[g->param];
			cJSON_AddStringToObject(o, "format", ir_qformat_name(p->format));
			if (p->format == QF_Q8 || p->format == QF_Q4) {
				cJSON_AddNumberToObject(o, "group", p->group);
				cJSON_AddStringToObject(o, "activations", ir_actformat_name(p->act));
			}
		}
		cJSON_AddNumberToObject(o, "offset", (double)g->offset);
		cJSON_AddNumberToObject(o, "bytes", (double)g->size);
		cJSON_AddItemToArray(ws, o);
	}
	cJSON *ks = cJSON_AddArrayToObject(root, "knobs");
	for (uint32_t i = 0; i < m->nknobs; i++) {
		const Knob *k = &m->knobs[i];
		cJSON *o = cJSON_CreateObject();
		cJSON_AddStringToObject(o, "name", k->name);
		cJSON_AddStringToObject(o, "dtype", ir_dtype_name(k->dtype));
		cJSON_AddNumberToObject(o, "default", k->dflt);
		cJSON *range = cJSON_AddArrayToObject(o, "range");
		cJSON_AddItemToArray(range, cJSON_CreateNumber(k->lo));
		cJSON_AddItemToArray(range, cJSON_CreateNumber(k->hi));
		cJSON_AddItemToArray(ks, o);
	}
	cJSON *ss = cJSON_AddArrayToObject(root, "stats");
	for (uint32_t i = 0; i < m->nstats; i++)
		cJSON_AddItemToArray(ss, cJSON_CreateString(m->stats[i].name));
	cJSON *es = cJSON_AddArrayToObject(root, "entries");
	for (uint32_t e = 0; e < r->nentries; e++) {
		const CgEntry *ce = &r->entries[e];
		const Func *f = m->funcs[e];
		cJSON *o = cJSON_CreateObject();
		cJSON_AddStringToObject(o, "name", ce->name);
		cJSON_AddNumberToObject(o, "arena", (double)ce->arena);
		cJSON_AddNumberToObject(o, "flops_per_token", ce->flops);
		cJSON_AddNumberToObject(o, "flops_per_key", ce->flops_per_key);
		cJSON_AddNumberToObject(o, "kv_bytes_per_key", ce->kv_bytes_per_key);
		cJSON_AddNumberToObject(o, "weight_bytes_per_token", ce->bytes);
		cJSON *ps = cJSON_AddArrayToObject(o, "paths");
		for (uint32_t k = 0; k < ce->npaths; k++) {
			const CgPath *p = &ce->paths[k];
			cJSON *po = cJSON_CreateObject();
			cJSON_AddNumberToObject(po, "site", p->site);
			cJSON_AddNumberToObject(po, "ret_op", p->ret);
			cJSON_AddNumberToObject(po, "layers", (double)p->layers);
			cJSON_AddNumberToObject(po, "flops_per_token", p->flops);
			cJSON_AddNumberToObject(po, "flops_per_key", p->flops_per_key);
			cJSON_AddNumberToObject(po, "kv_bytes_per_key", p->kv_bytes_per_key);
			cJSON_AddNumberToObject(po, "weight_bytes_per_token", p->bytes);
			cJSON_AddItemToArray(ps, po);
		}
		cJSON *ops = cJSON_AddArrayToObject(o, "ops");
		for (uint32_t i = 0; i < f->nops; i++)
			cJSON_AddItemToArray(ops, cJSON_CreateString(ir_op_names[f->ops[i].code]));
		cJSON *ls = cJSON_AddArrayToObject(o, "layers");
		for (uint32_t l = 0; l < ce->nlayers; l++) {
			cJSON *lo = cJSON_CreateObject();
			cJSON_AddNumberToObject(lo, "layer", ce->layers[l].layer);
			cJSON_AddNumberToObject(lo, "flops", ce->layers[l].flops);
			cJSON_AddNumberToObject(lo, "flops_per_key", ce->layers[l].flops_per_key);
			cJSON_AddNumberToObject(lo, "kv_bytes_per_key", ce->layers[l].kv_bytes_per_key);
			cJSON_AddNumberToObject(lo, "bytes", ce->layers[l].bytes);
			if (ce->layers[l].attn)
				cJSON_AddItemToObject(lo, "attention", attention_form(m, ce->layers[l].attn));
			cJSON_AddItemToArray(ls, lo);
		}
		cJSON_AddItemToArray(es, o);
	}
	char *s = cJSON_Print(root);
	cJSON_Delete(root);
	size_t n = strlen(s);
	char *out = xmalloc(n + 2);
	memcpy(out, s, n);
	out[n] = '\n';
	out[n + 1] = 0;
	cJSON_free(s);
	return out;
}
