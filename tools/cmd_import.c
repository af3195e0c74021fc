/* cmd_import.c - `elide import`: a checkpoint's description to a readable .elide model.
 *   elide import DIR|FILE.gguf [-o MODEL.elide] [--name NAME] [--ctx N]
 * DIR is a Hugging Face model directory: config.json gives the architecture and sizes,
 * the tensor names come from model.safetensors.index.json or model.safetensors.
 * A GGUF file gives both in its metadata and tensor infos.  Supported: the Llama
 * family (Llama 2 and 3 with linear or Llama 3 RoPE scaling, Mistral, Qwen2 with its
 * q/k/v biases; tied embeddings when the checkpoint has no separate output head) and
 * BERT encoders (BertModel pooled output or BertForSequenceClassification logits).
 * The result is one model with `step` and `prefill` entries (an encoder: `forward`),
 * written only when the import succeeds.  Unknown architectures and unsupported
 * settings are errors naming the field.  docs/import.md describes the mapping. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "codegen/codegen.h"
#include "ir/ir.h"
#include "tools/driver.h"

#define IMPORT_MAX_CONFIG (16u << 20)
#define IMPORT_DEFAULT_CTX 4096

/* What the generator needs, from config.json or GGUF metadata. */
typedef struct Arch {
	const char *source;        /* where it came from, for the header comment */
	const char *kind;          /* "llama", "mistral", "qwen2" or "bert" */
	bool gguf;                 /* tensor names and rope layout of llama.cpp */
	int64_t dim, layers, heads, kv_heads, head_dim, ffn, vocab, ctx, max_pos;
	double eps, theta;
	double rope_factor, rope_low, rope_high; /* scaling (factor 0: none) */
	int64_t rope_orig;         /* Llama 3 scaling: original context (0: linear) */
	int64_t sliding_window;    /* Mistral: 0 when none */
	bool qkv_bias, o_bias, mlp_bias, tied;
	int rope_style;            /* 0 half (HF), 1 interleaved (llama.cpp's llama) */
	/* BERT */
	int64_t types, classes;
	const char *prefix;        /* "bert." or "" */
	bool classifier;
} Arch;

/* The checkpoint's tensor names. */
typedef struct Names {
	char **v;
	uint32_t n, cap;
} Names;

static bool
ierr(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("elide: error: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	return false;
}

static void
names_add(Names *ns, const char *s)
{
	VEC_PUSH(ns->v, ns->n, ns->cap);
	ns->v[ns->n++] = xstrdup(s);
}

static bool
has(const Names *ns, const char *s)
{
	for (uint32_t i = 0; i < ns->n; i++)
		if (strcmp(ns->v[i], s) == 0)
			return true;
	return false;
}

static void
names_free(Names *ns)
{
	for (uint32_t i = 0; i < ns->n; i++)
		free(ns->v[i]);
	free(ns->v);
}

/* ---- config.json ---- */

typedef struct Cfg {
	const cJSON *root;
	const char *path;
} Cfg;

static const cJSON *
cfg_item(const Cfg *c, const char *key)
{
	const cJSON *j = cJSON_GetObjectItemCaseSensitive(c->root, key);
	return j && !cJSON_IsNull(j) ? j : NULL;
}

/* An integer field in [lo, hi]; absent: dflt, or an error when dflt < 0 (required). */
static bool
cfg_int(const Cfg *c, const char *key, int64_t dflt, int64_t lo, int64_t hi, int64_t *out)
{
	const cJSON *j = cfg_item(c, key);
	if (!j) {
		if (dflt < 0)
			return ierr("%s: field '%s' is missing", c->path, key);
		*out = dflt;
		return true;
	}
	double v = j->valuedouble;
	if (!cJSON_IsNumber(j) || v != floor(v) || v < (double)lo || v > (double)hi)
		return ierr("%s: field '%s' must be an integer in %lld..%lld", c->path, key, (long long)lo, (long long)hi);
	*out = (int64_t)v;
	return true;
}

static bool
cfg_num(const Cfg *c, const char *key, double dflt, double *out)
{
	const cJSON *j = cfg_item(c, key);
	if (!j) {
		*out = dflt;
		return true;
	}
	if (!cJSON_IsNumber(j) || !(j->valuedouble > 0) || !isfinite(j->valuedouble))
		return ierr("%s: field '%s' must be a positive number", c->path, key);
	*out = j->valuedouble;
	return true;
}

static bool
cfg_bool(const Cfg *c, const char *key, bool dflt)
{
	const cJSON *j = cfg_item(c, key);
	return j && cJSON_IsBool(j) ? cJSON_IsTrue(j) : dflt;
}

static const char *
cfg_str(const Cfg *c, const char *key)
{
	const cJSON *j = cfg_item(c, key);
	return cJSON_IsString(j) ? j->valuestring : NULL;
}

/* rope_scaling: null, {"rope_type"|"type": "default"|"linear"|"llama3", ...} */
static bool
cfg_rope_scaling(const Cfg *c, Arch *a)
{
	const cJSON *rs = cfg_item(c, "rope_scaling");
	if (!rs)
		return true;
	if (!cJSON_IsObject(rs))
		return ierr("%s: field 'rope_scaling' must be an object or null", c->path);
	Cfg sub = { rs, c->path };
	const char *type = cfg_str(&sub, "rope_type"), *field = "rope_scaling.rope_type";
	if (!type) {
		type = cfg_str(&sub, "type");
		field = "rope_scaling.type";
	}
	if (!type)
		return ierr("%s: field 'rope_scaling.rope_type' is missing", c->path);
	if (strcmp(type, "default") == 0)
		return true;
	if (strcmp(type, "linear") != 0 && strcmp(type, "llama3") != 0)
		return ierr("%s: field '%s' is '%s'; elide supports 'linear' and 'llama3' RoPE scaling", c->path, field, type);
	const cJSON *f = cfg_item(&sub, "factor");
	if (!cJSON_IsNumber(f) || !(f->valuedouble > 0))
		return ierr("%s: field 'rope_scaling.factor' must be a positive number", c->path);
	a->rope_factor = f->valuedouble;
	if (strcmp(type, "linear") == 0)
		return true;
	const cJSON *lo = cfg_item(&sub, "low_freq_factor"), *hi = cfg_item(&sub, "high_freq_factor");
	const cJSON *orig = cfg_item(&sub, "original_max_position_embeddings");
	if (!cJSON_IsNumber(lo) || !(lo->valuedouble > 0))
		return ierr("%s: field 'rope_scaling.low_freq_factor' must be a positive number", c->path);
	if (!cJSON_IsNumber(hi) || !(hi->valuedouble > lo->valuedouble))
		return ierr("%s: field 'rope_scaling.high_freq_factor' must be a number above low_freq_factor", c->path);
	if (!cJSON_IsNumber(orig) || orig->valuedouble < 1 || orig->valuedouble > (double)INT_MAX ||
	    orig->valuedouble != floor(orig->valuedouble))
		return ierr("%s: field 'rope_scaling.original_max_position_embeddings' must be a positive integer", c->path);
	a->rope_low = lo->valuedouble;
	a->rope_high = hi->valuedouble;
	a->rope_orig = (int64_t)orig->valuedouble;
	return true;
}

/* The tensor names of a Hugging Face directory: its shard index or model.safetensors. */
static bool
hf_names(const char *dir, Names *ns)
{
	char path[PATH_MAX];
	snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
	struct stat sb;
	if (stat(path, &sb) == 0) {
		char *text = file_slurp(path, 64u << 20, NULL);
		cJSON *root = text ? cJSON_Parse(text) : NULL;
		free(text);
		const cJSON *map = root ? cJSON_GetObjectItemCaseSensitive(root, "weight_map") : NULL;
		if (!cJSON_IsObject(map)) {
			cJSON_Delete(root);
			return ierr("%s: expected a JSON object with a \"weight_map\" object", path);
		}
		for (const cJSON *e = map->child; e; e = e->next)
			names_add(ns, e->string);
		cJSON_Delete(root);
		return true;
	}
	snprintf(path, sizeof path, "%s/model.safetensors", dir);
	char err[512];
	StFile *f = st_open(path, err, sizeof err);
	if (!f)
		return ierr("%s (a model directory needs model.safetensors.index.json or model.safetensors)", err);
	for (uint32_t i = 0; i < f->ntensors; i++)
		names_add(ns, f->tensors[i].name);
	st_close(f);
	return true;
}

static bool
import_hf(const char *dir, Arch *a, Names *ns, int64_t want_ctx)
{
	char path[PATH_MAX];
	snprintf(path, sizeof path, "%s/config.json", dir);
	char *text = file_slurp(path, IMPORT_MAX_CONFIG, NULL);
	if (!text)
		return ierr("cannot read '%s': %s", path, errno ? strerror(errno) : "too large");
	cJSON *root = cJSON_Parse(text);
	free(text);
	if (!cJSON_IsObject(root)) {
		cJSON_Delete(root);
		return ierr("%s: not a JSON object", path);
	}
	Cfg c = { root, path };
	bool ok = false;
	const char *mt = cfg_str(&c, "model_type");
	const cJSON *archs = cfg_item(&c, "architectures");
	const char *arch0 = cJSON_IsArray(archs) && cJSON_IsString(cJSON_GetArrayItem(archs, 0))
	                        ? cJSON_GetArrayItem(archs, 0)->valuestring : "";
	if (!mt) {
		ierr("%s: field 'model_type' is missing", path);
		goto out;
	}
	a->source = "config.json";
	if (strcmp(mt, "llama") == 0 || strcmp(mt, "mistral") == 0 || strcmp(mt, "qwen2") == 0) {
		a->kind = strcmp(mt, "llama") == 0 ? "llama" : strcmp(mt, "mistral") == 0 ? "mistral" : "qwen2";
		const char *act = cfg_str(&c, "hidden_act");
		if (act && strcmp(act, "silu") != 0) {
			ierr("%s: field 'hidden_act' is '%s'; the %s family uses 'silu'", path, act, a->kind);
			goto out;
		}
		if (!cfg_int(&c, "hidden_size", -1, 1, 1 << 20, &a->dim) ||
		    !cfg_int(&c, "num_hidden_layers", -1, 1, 4096, &a->layers) ||
		    !cfg_int(&c, "num_attention_heads", -1, 1, 4096, &a->heads) ||
		    !cfg_int(&c, "num_key_value_heads", a->heads, 1, a->heads, &a->kv_heads) ||
		    !cfg_int(&c, "intermediate_size", -1, 1, 1 << 22, &a->ffn) ||
		    !cfg_int(&c, "vocab_size", -1, 1, 1 << 24, &a->vocab) ||
		    !cfg_int(&c, "max_position_embeddings", IMPORT_DEFAULT_CTX, 1, 1 << 24, &a->max_pos) ||
		    !cfg_int(&c, "head_dim", a->dim / a->heads, 2, 1 << 16, &a->head_dim) ||
		    !cfg_num(&c, "rms_norm_eps", 1e-6, &a->eps) || !cfg_num(&c, "rope_theta", 10000.0, &a->theta) ||
		    !cfg_rope_scaling(&c, a))
			goto out;
		if (a->heads % a->kv_heads) {
			ierr("%s: field 'num_key_value_heads' (%lld) must divide 'num_attention_heads' (%lld)", path,
			     (long long)a->kv_heads, (long long)a->heads);
			goto out;
		}
		if (a->head_dim % 2) {
			ierr("%s: field 'head_dim' must be even for RoPE, saw %lld", path, (long long)a->head_dim);
			goto out;
		}
		a->tied = cfg_bool(&c, "tie_word_embeddings", false);
		a->qkv_bias = strcmp(mt, "qwen2") == 0 || cfg_bool(&c, "attention_bias", false);
		a->o_bias = strcmp(mt, "qwen2") != 0 && cfg_bool(&c, "attention_bias", false);
		a->mlp_bias = cfg_bool(&c, "mlp_bias", false);
		bool sw = strcmp(mt, "mistral") == 0 || cfg_bool(&c, "use_sliding_window", false);
		int64_t w = 0;
		if (sw && !cfg_int(&c, "sliding_window", 0, 0, 1 << 24, &w))
			goto out;
		a->sliding_window = w;
	} else if (strcmp(mt, "bert") == 0) {
		a->kind = "bert";
		const char *act = cfg_str(&c, "hidden_act");
		if (act && strcmp(act, "gelu") != 0 && strcmp(act, "gelu_new") != 0) {
			ierr("%s: field 'hidden_act' is '%s'; BERT import supports 'gelu' (erf) and 'gelu_new' (tanh)", path, act);
			goto out;
		}
		const char *pet = cfg_str(&c, "position_embedding_type");
		if (pet && strcmp(pet, "absolute") != 0) {
			ierr("%s: field 'position_embedding_type' is '%s'; elide supports 'absolute'", path, pet);
			goto out;
		}
		a->rope_style = act && strcmp(act, "gelu_new") == 0; /* reused: the gelu approximation */
		if (!cfg_int(&c, "hidden_size", -1, 1, 1 << 20, &a->dim) ||
		    !cfg_int(&c, "num_hidden_layers", -1, 1, 4096, &a->layers) ||
		    !cfg_int(&c, "num_attention_heads", -1, 1, 4096, &a->heads) ||
		    !cfg_int(&c, "intermediate_size", -1, 1, 1 << 22, &a->ffn) ||
		    !cfg_int(&c, "vocab_size", -1, 1, 1 << 24, &a->vocab) ||
		    !cfg_int(&c, "max_position_embeddings", 512, 1, 1 << 24, &a->max_pos) ||
		    !cfg_int(&c, "type_vocab_size", 2, 1, 1 << 16, &a->types) ||
		    !cfg_num(&c, "layer_norm_eps", 1e-12, &a->eps))
			goto out;
		a->kv_heads = a->heads;
		a->classifier = strcmp(arch0, "BertForSequenceClassification") == 0;
		if (a->classifier) {
			const cJSON *labels = cfg_item(&c, "id2label");
			int64_t n = cJSON_IsObject(labels) ? cJSON_GetArraySize(labels) : 2;
			if (!cfg_int(&c, "num_labels", n, 1, 1 << 20, &a->classes))
				goto out;
		} else if (*arch0 && strcmp(arch0, "BertModel") != 0) {
			ierr("%s: field 'architectures' is '%s'; BERT import supports 'BertModel' and "
			     "'BertForSequenceClassification'", path, arch0);
			goto out;
		}
	} else {
		ierr("%s: field 'model_type' is '%s'; elide imports 'llama', 'mistral', 'qwen2' and 'bert'", path, mt);
		goto out;
	}
	if (!hf_names(dir, ns))
		goto out;
	if (strcmp(a->kind, "bert") == 0) {
		a->prefix = has(ns, "bert.embeddings.word_embeddings.weight") ? "bert." : "";
		a->ctx = want_ctx > 0 && want_ctx < a->max_pos ? want_ctx : a->max_pos;
	} else {
		a->tied = a->tied || !has(ns, "lm_head.weight");
		a->ctx = want_ctx > 0 ? want_ctx : (a->max_pos < IMPORT_DEFAULT_CTX ? a->max_pos : IMPORT_DEFAULT_CTX);
	}
	ok = true;
out:
	cJSON_Delete(root);
	return ok;
}

/* ---- GGUF ---- */

static bool
gg_int(const GgufFile *f, const char *arch, const char *key, int64_t dflt, int64_t lo, int64_t hi, int64_t *out)
{
	char k[128];
	snprintf(k, sizeof k, "%s.%s", arch, key);
	if (!gguf_kv_int(f, k, out)) {
		if (dflt < 0 || gguf_find_kv(f, k))
			return ierr("%s: metadata '%s' is %s", f->path, k, gguf_find_kv(f, k) ? "not an integer" : "missing");
		*out = dflt;
	}
	if (*out < lo || *out > hi)
		return ierr("%s: metadata '%s' is %lld, expected %lld..%lld", f->path, k, (long long)*out, (long long)lo,
		            (long long)hi);
	return true;
}

static bool
gg_num(const GgufFile *f, const char *arch, const char *key, double dflt, double *out)
{
	char k[128];
	snprintf(k, sizeof k, "%s.%s", arch, key);
	if (!gguf_kv_float(f, k, out)) {
		if (gguf_find_kv(f, k))
			return ierr("%s: metadata '%s' is not a number", f->path, k);
		*out = dflt;
	}
	if (!(*out > 0) || !isfinite(*out))
		return ierr("%s: metadata '%s' must be a positive number", f->path, k);
	return true;
}

static bool
import_gguf(const char *path, Arch *a, Names *ns, int64_t want_ctx)
{
	char err[600];
	GgufFile *f = gguf_open(path, err, sizeof err);
	if (!f)
		return ierr("%s", err);
	bool ok = false;
	const char *arch = gguf_kv_str(f, "general.architecture");
	a->source = "GGUF metadata";
	a->gguf = true;
	if (!arch) {
		ierr("%s: metadata 'general.architecture' is missing", path);
		goto out;
	}
	if (strcmp(arch, "llama") != 0 && strcmp(arch, "qwen2") != 0) {
		ierr("%s: metadata 'general.architecture' is '%s'; elide imports 'llama' and 'qwen2' from GGUF", path, arch);
		goto out;
	}
	a->kind = strcmp(arch, "llama") == 0 ? "llama" : "qwen2";
	/* llama.cpp permutes Q and K of 'llama' to interleaved pairs; 'qwen2' keeps halves */
	a->rope_style = strcmp(arch, "llama") == 0;
	a->qkv_bias = strcmp(arch, "qwen2") == 0;
	const GgufTensor *emb = gguf_find_tensor(f, "token_embd.weight");
	if (!emb || emb->rank != 2) {
		ierr("%s: tensor 'token_embd.weight' is %s", path, emb ? "not a matrix" : "missing");
		goto out;
	}
	if (!gg_int(f, arch, "embedding_length", -1, 1, 1 << 20, &a->dim) ||
	    !gg_int(f, arch, "block_count", -1, 1, 4096, &a->layers) ||
	    !gg_int(f, arch, "attention.head_count", -1, 1, 4096, &a->heads) ||
	    !gg_int(f, arch, "attention.head_count_kv", a->heads, 1, a->heads, &a->kv_heads) ||
	    !gg_int(f, arch, "feed_forward_length", -1, 1, 1 << 22, &a->ffn) ||
	    !gg_int(f, arch, "vocab_size", emb->shape[0], 1, 1 << 24, &a->vocab) ||
	    !gg_int(f, arch, "context_length", IMPORT_DEFAULT_CTX, 1, 1 << 24, &a->max_pos) ||
	    !gg_int(f, arch, "attention.key_length", a->dim / a->heads, 2, 1 << 16, &a->head_dim) ||
	    !gg_num(f, arch, "attention.layer_norm_rms_epsilon", 1e-5, &a->eps) ||
	    !gg_num(f, arch, "rope.freq_base", 10000.0, &a->theta))
		goto out;
	if (a->heads % a->kv_heads || a->head_dim % 2) {
		ierr("%s: metadata '%s.attention.head_count_kv' must divide the heads, and the head size be even", path, arch);
		goto out;
	}
	char k[128];
	snprintf(k, sizeof k, "%s.rope.scaling.type", arch);
	const char *st = gguf_kv_str(f, k);
	if (st && strcmp(st, "none") != 0) {
		if (strcmp(st, "linear") != 0) {
			ierr("%s: metadata '%s' is '%s'; elide supports 'linear' from GGUF", path, k, st);
			goto out;
		}
		if (!gg_num(f, arch, "rope.scaling.factor", 1.0, &a->rope_factor))
			goto out;
	}
	if (gguf_find_tensor(f, "rope_freqs.weight")) {
		ierr("%s: tensor 'rope_freqs.weight' (per-frequency RoPE factors, llama.cpp's form of Llama 3 scaling) "
		     "is not supported; import the Hugging Face checkpoint instead", path);
		goto out;
	}
	for (uint32_t i = 0; i < f->ntensors; i++)
		names_add(ns, f->tensors[i].name);
	a->tied = !has(ns, "output.weight");
	a->ctx = want_ctx > 0 ? want_ctx : (a->max_pos < IMPORT_DEFAULT_CTX ? a->max_pos : IMPORT_DEFAULT_CTX);
	ok = true;
out:
	gguf_close(f);
	return ok;
}

/* ---- the .elide text ---- */

/* A number the language reads as floating point (a '.' or an exponent). */
static const char *
fnum(double v, char *buf, size_t n)
{
	snprintf(buf, n, "%.9g", v);
	if (!strpbrk(buf, ".eEn"))
		strncat(buf, ".0", n - strlen(buf) - 1);
	return buf;
}

static void
emit_decoder(StrBuf *b, const Arch *a, const char *name)
{
	char f1[64], f2[64], f3[64];
	bool g = a->gguf;
	/* tensor names: Hugging Face or llama.cpp */
	const char *emb = g ? "token_embd.weight" : "model.embed_tokens.weight";
	const char *L = g ? "blk.{l}." : "model.layers.{l}.";
	const char *an = g ? "attn_norm" : "input_layernorm", *fn = g ? "ffn_norm" : "post_attention_layernorm";
	const char *q = g ? "attn_q" : "self_attn.q_proj", *k = g ? "attn_k" : "self_attn.k_proj";
	const char *v = g ? "attn_v" : "self_attn.v_proj", *o = g ? "attn_output" : "self_attn.o_proj";
	const char *gate = g ? "ffn_gate" : "mlp.gate_proj", *up = g ? "ffn_up" : "mlp.up_proj";
	const char *down = g ? "ffn_down" : "mlp.down_proj";
	const char *norm = g ? "output_norm.weight" : "model.norm.weight", *head = g ? "output.weight" : "lm_head.weight";
	const char *fmt = g ? "gguf" : "safetensors";
	sb_printf(b, "model %s {\n", name);
	sb_printf(b, "  const dim = %lld, layers = %lld, heads = %lld, kv_heads = %lld, ffn = %lld, vocab = %lld, ctx = %lld;\n",
	          (long long)a->dim, (long long)a->layers, (long long)a->heads, (long long)a->kv_heads, (long long)a->ffn,
	          (long long)a->vocab, (long long)a->ctx);
	sb_printf(b, "  const head_dim = %lld, q_dim = heads * head_dim, kv_dim = kv_heads * head_dim;\n",
	          (long long)a->head_dim);
	if (a->sliding_window)
		sb_printf(b, "  const sliding_window = %lld; # ctx is at most the window: attention over all of it is exact\n",
		          (long long)a->sliding_window);
	sb_printf(b, "\n  weights %s {\n    emb: f32[vocab, dim] = \"%s\";\n    for l in 0..layers {\n", fmt, emb);
	sb_printf(b, "      attn_norm[l]: f32[dim] = \"%s%s.weight\";\n", L, an);
	sb_printf(b, "      wq[l]: f32[q_dim, dim] = \"%s%s.weight\";\n", L, q);
	if (a->qkv_bias)
		sb_printf(b, "      bq[l]: f32[q_dim] = \"%s%s.bias\";\n", L, q);
	sb_printf(b, "      wk[l]: f32[kv_dim, dim] = \"%s%s.weight\";\n", L, k);
	if (a->qkv_bias)
		sb_printf(b, "      bk[l]: f32[kv_dim] = \"%s%s.bias\";\n", L, k);
	sb_printf(b, "      wv[l]: f32[kv_dim, dim] = \"%s%s.weight\";\n", L, v);
	if (a->qkv_bias)
		sb_printf(b, "      bv[l]: f32[kv_dim] = \"%s%s.bias\";\n", L, v);
	sb_printf(b, "      wo[l]: f32[dim, q_dim] = \"%s%s.weight\";\n", L, o);
	if (a->o_bias)
		sb_printf(b, "      bo[l]: f32[dim] = \"%s%s.bias\";\n", L, o);
	sb_printf(b, "      ffn_norm[l]: f32[dim] = \"%s%s.weight\";\n", L, fn);
	sb_printf(b, "      w1[l]: f32[ffn, dim] = \"%s%s.weight\";\n", L, gate);
	sb_printf(b, "      w3[l]: f32[ffn, dim] = \"%s%s.weight\";\n", L, up);
	sb_printf(b, "      w2[l]: f32[dim, ffn] = \"%s%s.weight\";\n", L, down);
	if (a->mlp_bias)
		sb_printf(b, "      b1[l]: f32[ffn] = \"%s%s.bias\";\n      b3[l]: f32[ffn] = \"%s%s.bias\";\n"
		             "      b2[l]: f32[dim] = \"%s%s.bias\";\n", L, gate, L, up, L, down);
	sb_printf(b, "    }\n    norm: f32[dim] = \"%s\";\n", norm);
	if (a->tied)
		sb_printf(b, "    lm_head: f32[vocab, dim] = \"%s\"; # tied to the embedding\n", emb);
	else
		sb_printf(b, "    lm_head: f32[vocab, dim] = \"%s\";\n", head);
	sb_printf(b, "  }\n\n  state kv[l in 0..layers]: kvcache(ctx, kv_heads, head_dim);\n\n");
	sb_printf(b, "  fn head(x: f32[dim]) -> f32[vocab] {\n    return linear(rmsnorm(x, norm, eps = %s), lm_head);\n  }\n\n",
	          fnum(a->eps, f1, sizeof f1));
	/* rope arguments */
	StrBuf r = { 0 };
	sb_printf(&r, "theta = %s, style = %s", fnum(a->theta, f1, sizeof f1), a->rope_style ? "interleaved" : "half");
	if (a->rope_factor > 0)
		sb_printf(&r, ", factor = %s", fnum(a->rope_factor, f1, sizeof f1));
	if (a->rope_orig > 0)
		sb_printf(&r, ", low_freq_factor = %s, high_freq_factor = %s, original_ctx = %lld",
		          fnum(a->rope_low, f2, sizeof f2), fnum(a->rope_high, f3, sizeof f3), (long long)a->rope_orig);
	const char *eps = fnum(a->eps, f1, sizeof f1);
	sb_printf(b, "  fn layer(x: f32[.., dim], pos: i32, l: int) -> f32[.., dim] {\n");
	sb_printf(b, "    h = rmsnorm(x, attn_norm[l], eps = %s);\n", eps);
	sb_printf(b, "    q = rope(linear(h, wq[l])%s, pos, heads, %s);\n", a->qkv_bias ? " + bq[l]" : "", r.s);
	sb_printf(b, "    k = rope(linear(h, wk[l])%s, pos, kv_heads, %s);\n", a->qkv_bias ? " + bk[l]" : "", r.s);
	sb_printf(b, "    v = linear(h, wv[l])%s;\n", a->qkv_bias ? " + bv[l]" : "");
	sb_printf(b, "    x = x + (linear(attention(q, k, v, kv[l], pos, heads, kv_heads), wo[l])%s);\n",
	          a->o_bias ? " + bo[l]" : "");
	sb_printf(b, "    h = rmsnorm(x, ffn_norm[l], eps = %s);\n", eps);
	if (a->mlp_bias)
		sb_printf(b, "    return x + (linear(silu(linear(h, w1[l]) + b1[l]) * (linear(h, w3[l]) + b3[l]), w2[l]) + b2[l]);\n");
	else
		sb_printf(b, "    return x + linear(silu(linear(h, w1[l])) * linear(h, w3[l]), w2[l]);\n");
	sb_printf(b, "  }\n\n");
	free(r.s);
	sb_printf(b, "  entry step(token: i32, pos: i32) -> f32[vocab] {\n    x = embed(emb, token);\n"
	             "    for l in 0..layers {\n      x = layer(x, pos, l);\n    }\n    return head(x);\n  }\n\n");
	sb_printf(b, "  entry prefill(tokens: i32[<=ctx], pos: i32) -> f32[vocab] {\n    x = embed(emb, tokens);\n"
	             "    for l in 0..layers {\n      x = layer(x, pos, l);\n    }\n    return head(row(x, -1));\n  }\n}\n");
}

static void
emit_bert(StrBuf *b, const Arch *a, const char *name)
{
	char f1[64];
	const char *P = a->prefix, *eps = fnum(a->eps, f1, sizeof f1);
	const char *out = a->classifier ? "classes" : "dim";
	sb_printf(b, "model %s {\n", name);
	sb_printf(b, "  const dim = %lld, layers = %lld, heads = %lld, ffn = %lld, vocab = %lld, ctx = %lld, types = %lld",
	          (long long)a->dim, (long long)a->layers, (long long)a->heads, (long long)a->ffn, (long long)a->vocab,
	          (long long)a->ctx, (long long)a->types);
	if (a->classifier)
		sb_printf(b, ", classes = %lld", (long long)a->classes);
	sb_printf(b, ";\n\n  weights safetensors {\n");
	sb_printf(b, "    word: f32[vocab, dim] = \"%sembeddings.word_embeddings.weight\";\n", P);
	/* the table is declared with its full length; only the first ctx rows are read */
	sb_printf(b, "    pos_emb: f32[%lld, dim] = \"%sembeddings.position_embeddings.weight\";\n", (long long)a->max_pos, P);
	sb_printf(b, "    type_emb: f32[types, dim] = \"%sembeddings.token_type_embeddings.weight\";\n", P);
	sb_printf(b, "    emb_ln_w: f32[dim] = \"%sembeddings.LayerNorm.weight\";\n", P);
	sb_printf(b, "    emb_ln_b: f32[dim] = \"%sembeddings.LayerNorm.bias\";\n    for l in 0..layers {\n", P);
	static const struct { const char *w, *b, *tensor, *shape, *bshape; } lin[] = {
		{ "wq", "bq", "attention.self.query", "dim, dim", "dim" },
		{ "wk", "bk", "attention.self.key", "dim, dim", "dim" },
		{ "wv", "bv", "attention.self.value", "dim, dim", "dim" },
		{ "wo", "bo", "attention.output.dense", "dim, dim", "dim" },
		{ "ln1_w", "ln1_b", "attention.output.LayerNorm", "dim", "dim" },
		{ "wi", "bi", "intermediate.dense", "ffn, dim", "ffn" },
		{ "wf", "bf", "output.dense", "dim, ffn", "dim" },
		{ "ln2_w", "ln2_b", "output.LayerNorm", "dim", "dim" },
	};
	for (size_t i = 0; i < sizeof lin / sizeof lin[0]; i++)
		sb_printf(b, "      %s[l]: f32[%s] = \"%sencoder.layer.{l}.%s.weight\";\n"
		             "      %s[l]: f32[%s] = \"%sencoder.layer.{l}.%s.bias\";\n",
		          lin[i].w, lin[i].shape, P, lin[i].tensor, lin[i].b, lin[i].bshape, P, lin[i].tensor);
	sb_printf(b, "    }\n    pool_w: f32[dim, dim] = \"%spooler.dense.weight\";\n"
	             "    pool_b: f32[dim] = \"%spooler.dense.bias\";\n", P, P);
	if (a->classifier)
		sb_printf(b, "    cls_w: f32[classes, dim] = \"classifier.weight\";\n"
		             "    cls_b: f32[classes] = \"classifier.bias\";\n");
	sb_printf(b, "  }\n\n  entry forward(tokens: i32[<=ctx]) -> f32[%s] {\n", out);
	sb_printf(b, "    # every token has type 0\n"
	             "    e = embed(word, tokens) + row(type_emb, 0) + embed(pos_emb, positions(tokens, 0));\n");
	sb_printf(b, "    x = layernorm(e, emb_ln_w, emb_ln_b, eps = %s);\n    for l in 0..layers {\n", eps);
	sb_printf(b, "      q = linear(x, wq[l]) + bq[l];\n      k = linear(x, wk[l]) + bk[l];\n"
	             "      v = linear(x, wv[l]) + bv[l];\n"
	             "      a = linear(attention(q, k, v, heads = heads), wo[l]) + bo[l];\n"
	             "      x = layernorm(x + a, ln1_w[l], ln1_b[l], eps = %s);\n"
	             "      h = gelu(linear(x, wi[l]) + bi[l], approx = %s);\n"
	             "      x = layernorm(x + (linear(h, wf[l]) + bf[l]), ln2_w[l], ln2_b[l], eps = %s);\n    }\n",
	          eps, a->rope_style ? "tanh" : "erf", eps);
	sb_printf(b, "    pooled = tanh(linear(row(x, 0), pool_w) + pool_b);\n");
	if (a->classifier)
		sb_printf(b, "    return linear(pooled, cls_w) + cls_b;\n  }\n}\n");
	else
		sb_printf(b, "    return pooled;\n  }\n}\n");
}

/* Every tensor the text names must be in the checkpoint (catches layouts we do not
 * know before the user compiles). */
static bool
check_names(const char *text, const Arch *a, const Names *ns, const char *input)
{
	bool ok = true;
	for (const char *p = strstr(text, "= \""); p; p = strstr(p + 1, "= \"")) {
		const char *s = p + 3, *e = strchr(s, '"');
		if (!e)
			break;
		char name[512];
		size_t n = (size_t)(e - s) < sizeof name - 1 ? (size_t)(e - s) : sizeof name - 1;
		memcpy(name, s, n);
		name[n] = '\0';
		char *brace = strstr(name, "{l}");
		for (int64_t l = 0; l < (brace ? a->layers : 1); l++) {
			char full[600];
			if (brace)
				snprintf(full, sizeof full, "%.*s%lld%s", (int)(brace - name), name, (long long)l, brace + 3);
			else
				snprintf(full, sizeof full, "%s", name);
			if (!has(ns, full)) {
				ok = ierr("%s: the checkpoint has no tensor '%s', which a %s model needs", input, full, a->kind);
				break;
			}
		}
	}
	return ok;
}

static void
usage(FILE *out)
{
	fprintf(out, "USAGE: elide import DIR|FILE.gguf [-o MODEL.elide] [--name NAME] [--ctx N]\n\n"
	             "Writes an .elide model for a Hugging Face checkpoint directory (config.json with\n"
	             "model.safetensors or a shard index) or a GGUF file: Llama 2/3, Mistral, Qwen2,\n"
	             "BERT.  Compile it with the same weights: elide compile MODEL.elide -w DIR|FILE.gguf\n\n"
	             "OPTIONS:\n"
	             "  -o FILE      where to write the model (default: standard output)\n"
	             "  --name NAME  the model's name, which prefixes the generated C symbols (default: the\n"
	             "               architecture)\n"
	             "  --ctx N      the KV cache length (default: the checkpoint's maximum, at most %d;\n"
	             "               an encoder's longest sequence)\n", IMPORT_DEFAULT_CTX);
}

static bool
valid_ident(const char *s)
{
	if (!*s || !(*s == '_' || (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z')))
		return false;
	for (; *s; s++)
		if (!(*s == '_' || (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9')))
			return false;
	return true;
}

int
cmd_import(int argc, char **argv)
{
	const char *input = NULL, *out = NULL, *name = NULL;
	int64_t ctx = 0;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			usage(stdout);
			return 0;
		} else if ((strcmp(a, "-o") == 0 || strcmp(a, "--name") == 0 || strcmp(a, "--ctx") == 0) && i + 1 >= argc) {
			fprintf(stderr, "elide: error: '%s' needs a value\n", a);
			return 2;
		} else if (strcmp(a, "-o") == 0) {
			out = argv[++i];
		} else if (strcmp(a, "--name") == 0) {
			name = argv[++i];
			if (!valid_ident(name)) {
				fprintf(stderr, "elide: error: --name '%s' is not an identifier\n", name);
				return 2;
			}
		} else if (strcmp(a, "--ctx") == 0) {
			char *end;
			errno = 0;
			long long v = strtoll(argv[++i], &end, 10);
			if (errno || *end || v < 1 || v > (1 << 24)) {
				fprintf(stderr, "elide: error: --ctx expects an integer in 1..%d, saw '%s'\n", 1 << 24, argv[i]);
				return 2;
			}
			ctx = v;
		} else if (a[0] == '-') {
			fprintf(stderr, "elide: error: unknown option '%s' (see 'elide import --help')\n", a);
			return 2;
		} else if (!input) {
			input = a;
		} else {
			fprintf(stderr, "elide: error: more than one checkpoint ('%s' and '%s')\n", input, a);
			return 2;
		}
	}
	if (!input) {
		fprintf(stderr, "elide: error: no checkpoint given\n");
		usage(stderr);
		return 2;
	}
	Arch a = { 0 };
	Names ns = { 0 };
	struct stat sb;
	bool ok;
	if (stat(input, &sb) != 0)
		ok = ierr("cannot open '%s': %s", input, strerror(errno));
	else if (S_ISDIR(sb.st_mode))
		ok = import_hf(input, &a, &ns, ctx);
	else
		ok = import_gguf(input, &a, &ns, ctx);
	if (ok && a.sliding_window > 0 && a.ctx > a.sliding_window) {
		if (ctx > 0)
			ok = ierr("--ctx %lld is longer than the sliding window of %lld: elide's attention is not windowed",
			          (long long)ctx, (long long)a.sliding_window);
		else
			a.ctx = a.sliding_window;
	}
	StrBuf b = { 0 };
	if (ok) {
		sb_printf(&b, "# %s: imported by `elide import` from %s (%s)\n", name ? name : a.kind, input, a.source);
		if (strcmp(a.kind, "bert") == 0)
			emit_bert(&b, &a, name ? name : "bert");
		else
			emit_decoder(&b, &a, name ? name : a.kind);
		ok = check_names(b.s, &a, &ns, input);
	}
	if (ok && out) { /* an exclusive temporary renamed into place: no planted link followed */
		char err[600];
		if (!cg_write_file(out, b.s, b.n, err, sizeof err))
			ok = ierr("%s", err);
	} else if (ok) {
		fputs(b.s, stdout);
		if (fflush(stdout) != 0)
			ok = ierr("cannot write '<stdout>'");
	}
	free(b.s);
	names_free(&ns);
	return ok ? 0 : 1;
}
