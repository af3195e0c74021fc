/* weights.c - a model's weights from several files.  Each path given is one of:
 *   - a directory: its model.safetensors.index.json if present, else its
 *     model.safetensors (a Hugging Face model directory);
 *   - a file ending in .json: a Hugging Face shard index, whose "weight_map" maps
 *     tensor names to shard files in the index's directory (plain relative names;
 *     absolute paths and ".." are refused); every mapping is checked against its shard;
 *   - a GGUF file (recognised by its magic), else a safetensors file.
 * The tensors of all files form one table; a name defined by two files is an error
 * naming the tensor and both files.  Params are then loaded by name with the checks
 * of the single-file loader (shape, dtype), converted to f32. */
#include "ir/ir.h"

#include <cjson/cJSON.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define W_MAX_FILES 4096u
#define W_MAX_INDEX (64u << 20)

typedef struct WFile {
	char *path;
	StFile *st;                /* exactly one of st, gg */
	GgufFile *gg;
} WFile;

typedef struct WTensor {
	const char *name;
	uint32_t file;             /* index into WSet.files */
	const StTensor *st;        /* exactly one of st, gg */
	const GgufTensor *gg;
} WTensor;

typedef struct WSet {
	WFile *files; uint32_t nfiles, capfiles;
	WTensor *ts; uint32_t nts, capts;
	Diag *d;
} WSet;

static bool
ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), k = strlen(suffix);
	return n >= k && strcmp(s + n - k, suffix) == 0;
}

static bool
is_dir(const char *path)
{
	struct stat sb;
	return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

static bool
exists(const char *path)
{
	struct stat sb;
	return stat(path, &sb) == 0;
}

static bool
is_gguf(const char *path)
{
	unsigned char magic[4] = { 0 };
	FILE *fp = file_fopen_read(path);
	if (!fp)
		return false;
	size_t n = fread(magic, 1, 4, fp);
	fclose(fp);
	return n == 4 && memcmp(magic, "GGUF", 4) == 0;
}

/* Opens one weights file (not an index) and adds its tensors; returns its index or -1. */
static int64_t
add_file(WSet *w, const char *path)
{
	char err[600];
	if (w->nfiles >= W_MAX_FILES) {
		diag_error(w->d, (Loc){ .file = path }, "more than %u weight files", W_MAX_FILES);
		return -1;
	}
	char *real = realpath(path, NULL);
	for (uint32_t i = 0; real && i < w->nfiles; i++) {
		char *other = realpath(w->files[i].path, NULL);
		bool same = other && strcmp(real, other) == 0;
		free(other);
		if (same) {
			diag_error(w->d, (Loc){ .file = path }, "weights file '%s' is given twice (also as '%s')", path,
			           w->files[i].path);
			free(real);
			return -1;
		}
	}
	free(real);
	WFile f = { .path = xstrdup(path) };
	if (is_gguf(path))
		f.gg = gguf_open(path, err, sizeof err);
	else
		f.st = st_open(path, err, sizeof err);
	if (!f.gg && !f.st) {
		diag_error(w->d, (Loc){ .file = path }, "%s", err);
		free(f.path);
		return -1;
	}
	VEC_PUSH(w->files, w->nfiles, w->capfiles);
	uint32_t fi = w->nfiles++;
	w->files[fi] = f;
	uint32_t n = f.st ? f.st->ntensors : f.gg->ntensors;
	for (uint32_t i = 0; i < n; i++) {
		VEC_PUSH(w->ts, w->nts, w->capts);
		WTensor *t = &w->ts[w->nts++];
		*t = (WTensor){ .file = fi };
		if (f.st) {
			t->st = &f.st->tensors[i];
			t->name = t->st->name;
		} else {
			t->gg = &f.gg->tensors[i];
			t->name = t->gg->name;
		}
	}
	return fi;
}

/* A shard name of an index: relative, no "..", no empty component. */
static bool
safe_shard_name(const char *s)
{
	if (!*s || s[0] == '/')
		return false;
	for (const char *p = s; *p;) {
		const char *e = strchr(p, '/');
		size_t n = e ? (size_t)(e - p) : strlen(p);
		if (n == 0 || (n == 2 && p[0] == '.' && p[1] == '.'))
			return false;
		p += n + (e != NULL);
	}
	return true;
}

static bool
in_file(const WSet *w, uint32_t file, const char *name)
{
	const WFile *f = &w->files[file];
	return f->st ? st_find(f->st, name) != NULL : gguf_find_tensor(f->gg, name) != NULL;
}

/* A Hugging Face shard index: opens each shard once, checks every mapping. */
static bool
add_index(WSet *w, const char *path)
{
	Loc loc = { .file = path };
	size_t len = 0;
	char *text = file_slurp(path, W_MAX_INDEX, &len);
	if (!text) {
		diag_error(w->d, loc, "cannot read the shard index '%s' (missing, unreadable or over %u MB)", path,
		           W_MAX_INDEX >> 20);
		return false;
	}
	cJSON *root = cJSON_ParseWithLength(text, len);
	free(text);
	const cJSON *map = root ? cJSON_GetObjectItemCaseSensitive(root, "weight_map") : NULL;
	if (!cJSON_IsObject(map)) {
		diag_error(w->d, loc, "'%s' is not a shard index: expected a JSON object with a \"weight_map\" object",
		           path);
		cJSON_Delete(root);
		return false;
	}
	const char *slash = strrchr(path, '/');
	size_t dirlen = slash ? (size_t)(slash - path + 1) : 0;
	/* shard names in first-seen order, each opened once */
	char **names = NULL;
	int64_t *fidx = NULL;
	uint32_t nnames = 0, cap = 0, capi = 0;
	bool ok = true;
	for (const cJSON *e = map->child; e && ok; e = e->next) {
		if (!cJSON_IsString(e) || !e->string || !safe_shard_name(e->valuestring)) {
			diag_error(w->d, loc, "weight_map entry '%s' must name a shard file in the index's directory",
			           e->string ? e->string : "?");
			ok = false;
			break;
		}
		uint32_t k = 0;
		while (k < nnames && strcmp(names[k], e->valuestring) != 0)
			k++;
		if (k == nnames) {
			char *full = xmalloc(dirlen + strlen(e->valuestring) + 1);
			memcpy(full, path, dirlen);
			strcpy(full + dirlen, e->valuestring);
			int64_t fi = add_file(w, full);
			free(full);
			if (fi < 0) {
				ok = false;
				break;
			}
			VEC_PUSH(names, nnames, cap);
			VEC_PUSH(fidx, nnames, capi);
			names[nnames] = xstrdup(e->valuestring);
			fidx[nnames++] = fi;
		}
		if (!in_file(w, (uint32_t)fidx[k], e->string)) {
			diag_error(w->d, loc, "the index maps tensor '%s' to '%s', which does not hold it", e->string,
			           e->valuestring);
			ok = false;
		}
	}
	if (ok && nnames == 0) {
		diag_error(w->d, loc, "the shard index '%s' maps no tensors", path);
		ok = false;
	}
	for (uint32_t i = 0; i < nnames; i++)
		free(names[i]);
	free(names);
	free(fidx);
	cJSON_Delete(root);
	return ok;
}

static bool
add_path(WSet *w, const char *path)
{
	if (is_dir(path)) {
		size_t n = strlen(path);
		char *p = xmalloc(n + 40);
		snprintf(p, n + 40, "%s/model.safetensors.index.json", path);
		bool ok;
		if (exists(p)) {
			ok = add_index(w, p);
		} else {
			snprintf(p, n + 40, "%s/model.safetensors", path);
			if (exists(p)) {
				ok = add_file(w, p) >= 0;
			} else {
				diag_error(w->d, (Loc){ .file = path },
				           "directory '%s' has neither model.safetensors.index.json nor model.safetensors", path);
				ok = false;
			}
		}
		free(p);
		return ok;
	}
	if (ends_with(path, ".json"))
		return add_index(w, path);
	return add_file(w, path) >= 0;
}

static int
cmp_wtensor(const void *a, const void *b)
{
	const WTensor *x = a, *y = b;
	int c = strcmp(x->name, y->name);
	return c ? c : (x->file < y->file ? -1 : x->file > y->file);
}

static void
wset_free(WSet *w)
{
	for (uint32_t i = 0; i < w->nfiles; i++) {
		st_close(w->files[i].st);
		gguf_close(w->files[i].gg);
		free(w->files[i].path);
	}
	free(w->files);
	free(w->ts);
}

static char *
shape_str(int rank, const int64_t *shape, char *buf, size_t n)
{
	size_t k = (size_t)snprintf(buf, n, "[");
	for (int i = 0; i < rank && k < n; i++)
		k += (size_t)snprintf(buf + k, n - k, "%s%lld", i ? ", " : "", (long long)shape[i]);
	if (k < n)
		snprintf(buf + k, n - k, "]");
	return buf;
}

/* Loads one param from tensor t; false with a diagnostic at the param. */
static bool
load_one(WSet *w, Param *p, const WTensor *t, Diag *d)
{
	const char *path = w->files[t->file].path;
	char want[96], have[96], err[600];
	int rank = t->st ? t->st->rank : t->gg->rank;
	const int64_t *shape = t->st ? t->st->shape : t->gg->shape;
	if (p->type.dtype != DT_F32 && p->type.dtype != DT_F16 && p->type.dtype != DT_BF16) {
		diag_error(d, p->loc, "param '%s' is declared %s; only floating-point params can be loaded", p->name,
		           ir_dtype_name(p->type.dtype));
		return false;
	}
	if (t->st && t->st->dtype != DT_F32 && t->st->dtype != DT_F16 && t->st->dtype != DT_BF16) {
		diag_error(d, p->loc, "tensor '%s' in '%s' has dtype %s, expected F32, F16 or BF16", p->source, path,
		           ir_dtype_name(t->st->dtype));
		return false;
	}
	DType file_dt = t->st ? t->st->dtype : DT_F32;
	DType want_dt = p->type.dtype != DT_F32 ? p->type.dtype : p->file_dtype;
	if (t->st && want_dt != DT_F32 && file_dt != want_dt) {
		/* f16 and bf16 widen exactly to f32; anything else would be rounded (or,
		 * loaded at full precision, differ from what the declaration says) */
		diag_error(d, p->loc, "tensor '%s' in '%s' has dtype %s, but '%s' is declared %s; convert the "
		           "file or declare the weight f32", p->source, path, file_dt == DT_F32 ? "F32" :
		           file_dt == DT_F16 ? "F16" : "BF16", p->name, ir_dtype_name(want_dt));
		return false;
	}
	bool same = rank == p->type.rank && !p->type.dyn0;
	for (int k = 0; same && k < rank; k++)
		same = shape[k] == p->type.dims[k];
	if (!same) {
		diag_error(d, p->loc, "tensor '%s' in '%s' has shape %s, but '%s' is declared %s", p->source, path,
		           shape_str(rank, shape, have, sizeof have), p->name, ir_type_str(p->type, want, sizeof want));
		return false;
	}
	size_t n = (size_t)ir_type_numel(p->type);
	float *data = xmalloc((n ? n : 1) * sizeof *data);
	bool ok = t->st ? st_read_f32(w->files[t->file].st, t->st, data, err, sizeof err)
	                : gguf_read_f32(w->files[t->file].gg, t->gg, data, err, sizeof err);
	if (!ok) {
		diag_error(d, p->loc, "%s (in '%s')", err, path);
		free(data);
		return false;
	}
	for (size_t i = 0; i < n; i++)
		if (!isfinite(data[i])) {
			diag_error(d, p->loc, "tensor '%s' in '%s' holds %s at element %zu; weights must be finite", p->source,
			           path, isnan(data[i]) ? "NaN" : "an infinity", i);
			free(data);
			return false;
		}
	free(p->data);
	p->data = data;
	p->hash = hash_data(data, n * sizeof *data, 0);
	/* a param declared quantised (textual IR) is quantised as it is loaded */
	QFormat qf = p->format;
	free(p->qdata);
	p->qdata = NULL;
	p->format = QF_F32;
	if (qf != QF_F32 && !ir_quantize_param(p, qf, p->group, err, sizeof err)) {
		diag_error(d, p->loc, "%s", err);
		return false;
	}
	return true;
}

bool
ir_load_weights(Module *m, const char *const *paths, uint32_t npaths, Diag *d)
{
	return ir_load_weights_progress(m, paths, npaths, d, NULL, NULL);
}

bool
ir_load_weights_progress(Module *m, const char *const *paths, uint32_t npaths, Diag *d,
                         void (*progress)(void *arg, uint64_t done, uint64_t total), void *arg)
{
	if (npaths == 0) {
		diag_error(d, (Loc){ 0 }, "no weights file given for model '%s' (use -w FILE.safetensors)", m->name);
		return false;
	}
	WSet w = { .d = d };
	bool ok = true;
	for (uint32_t i = 0; i < npaths && ok; i++)
		ok = add_path(&w, paths[i]);
	if (ok) {
		qsort(w.ts, w.nts, sizeof *w.ts, cmp_wtensor);
		for (uint32_t i = 1; i < w.nts; i++)
			if (strcmp(w.ts[i - 1].name, w.ts[i].name) == 0) {
				diag_error(d, (Loc){ .file = w.files[w.ts[i].file].path },
				           "tensor '%s' is defined in both '%s' and '%s'", w.ts[i].name,
				           w.files[w.ts[i - 1].file].path, w.files[w.ts[i].file].path);
				ok = false;
				while (i + 1 < w.nts && strcmp(w.ts[i].name, w.ts[i + 1].name) == 0)
					i++;
			}
	}
	bool files_ok = ok;
	uint64_t total = 0, done = 0;
	for (uint32_t i = 0; i < m->nparams; i++)
		total += (uint64_t)ir_type_numel(m->params[i].type) * sizeof(float);
	for (uint32_t i = 0; i < m->nparams && files_ok; i++) {
		Param *p = &m->params[i];
		if (progress)
			progress(arg, done, total);
		done += (uint64_t)ir_type_numel(p->type) * sizeof(float);
		if (!p->source) {
			diag_error(d, p->loc, "param '%s' has no tensor name to load from", p->name);
			ok = false;
			continue;
		}
		WTensor key = { .name = p->source };
		const WTensor *t = NULL;
		/* binary search (names are unique once the check passed) */
		size_t lo = 0, hi = w.nts;
		while (lo < hi) {
			size_t mid = (lo + hi) / 2;
			if (strcmp(w.ts[mid].name, key.name) < 0)
				lo = mid + 1;
			else
				hi = mid;
		}
		if (lo < w.nts && strcmp(w.ts[lo].name, key.name) == 0)
			t = &w.ts[lo];
		if (!t) {
			if (w.nfiles == 1)
				diag_error(d, p->loc, "tensor '%s' not found in '%s'", p->source, w.files[0].path);
			else
				diag_error(d, p->loc, "tensor '%s' not found in any of the %u weight files", p->source, w.nfiles);
			ok = false;
			continue;
		}
		if (!load_one(&w, p, t, d))
			ok = false;
	}
	wset_free(&w);
	return ok;
}
