/* report.c - the summary of `make bench`: reads the JSON objects the benchmark
 * programs wrote into OUT_DIR (stream.json, blas.json, kernel-NAME.json,
 * model-NAME.json, policy-NAME.json, quant-NAME-FORMAT.json, ort.json, peers.json,
 * longctx-NAME.json), derives the comparisons -- generated kernels / OpenBLAS, decode
 * weight-read rate / measured bandwidth, prefill GFLOPS / OpenBLAS SGEMM at the same
 * shapes -- prints a table and writes everything into one results file.
 * Usage: bench_report OUT_DIR results.json */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <time.h>

#include "bench/bench.h"

static cJSON *
load(const char *dir, const char *name)
{
	char path[1024];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	char *s = malloc((size_t)n + 1);
	size_t got = fread(s, 1, (size_t)n, f);
	s[got] = 0;
	fclose(f);
	cJSON *j = cJSON_Parse(s);
	if (!j)
		fprintf(stderr, "bench_report: %s is not valid JSON\n", path);
	free(s);
	return j;
}

static double
num(const cJSON *o, const char *a, const char *b)
{
	const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, a);
	if (b)
		x = cJSON_GetObjectItemCaseSensitive(x, b);
	return cJSON_IsNumber(x) ? x->valuedouble : 0;
}

/* The shape object called name in an array of shapes (blas "shapes" or kernels). */
static const cJSON *
shape(const cJSON *arr, const char *name)
{
	const cJSON *s;
	cJSON_ArrayForEach(s, arr)
	{
		const cJSON *n = cJSON_GetObjectItemCaseSensitive(s, "name");
		if (cJSON_IsString(n) && strcmp(n->valuestring, name) == 0)
			return s;
	}
	return NULL;
}

/* Seconds OpenBLAS needs for the matrix products of model m's t-token prefill at
 * `th` threads (0 when a shape is missing). */
static double
blas_prefill_seconds(const cJSON *shapes, const char *m, const cJSON *model, int th)
{
	const cJSON *sh = cJSON_GetObjectItemCaseSensitive(model, "shape");
	double layers = num(sh, "layers", NULL), t = num(model, "prefill_tokens", NULL);
	/* wq wk wv wo w1 w3 w2, by the shape each has */
	const char *as[] = { "wq", "wk", "wk", "wq", "w1", "w1", "w2" };
	char key[64], thk[4];
	snprintf(thk, sizeof thk, "%d", th);
	double sec = 0;
	for (int i = 0; i < 7; i++) {
		snprintf(key, sizeof key, "%s.%s", m, as[i]);
		const cJSON *s = shape(shapes, key);
		if (!s && strcmp(as[i], "wk") == 0) { /* wk/wv have wq's shape */
			snprintf(key, sizeof key, "%s.wq", m);
			s = shape(shapes, key);
		}
		double g = num(s, "sgemm_gflops", thk);
		if (!s || g <= 0)
			return 0;
		sec += layers * 2.0 * t * num(s, "n", NULL) * num(s, "k", NULL) / (g * 1e9);
	}
	snprintf(key, sizeof key, "%s.lm", m);
	const cJSON *lm = shape(shapes, key);
	double g = num(lm, "sgemv_gflops", thk);
	if (!lm || g <= 0)
		return 0;
	return sec + 2.0 * num(lm, "n", NULL) * num(lm, "k", NULL) / (g * 1e9);
}

static int
by_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted file names in dir that start with prefix. */
static int
list(const char *dir, const char *prefix, char **names, int max)
{
	DIR *d = opendir(dir);
	int n = 0;
	struct dirent *e;
	while (d && (e = readdir(d)) && n < max)
		if (strncmp(e->d_name, prefix, strlen(prefix)) == 0 && strstr(e->d_name, ".json"))
			names[n++] = strdup(e->d_name);
	if (d)
		closedir(d);
	qsort(names, (size_t)n, sizeof *names, by_name);
	return n;
}

/* The policy runs (policy-NAME.json: pruning, early exit, schedules): paired decode
 * speed-up against the ratio of weight bytes per token. */
static void
report_policies(const char *dir, cJSON *res)
{
	char *names[64];
	int n = list(dir, "policy-", names, 64);
	cJSON *arr = cJSON_AddArrayToObject(res, "policies");
	for (int i = 0; i < n; i++) {
		cJSON *p = load(dir, names[i]);
		free(names[i]);
		if (!p)
			continue;
		const cJSON *th = cJSON_GetObjectItemCaseSensitive(p, "threads");
		printf("\n%s, %s: weight bytes per token %.0f -> %.0f (ratio %.2fx)\n",
		       cJSON_GetObjectItemCaseSensitive(p, "name")->valuestring,
		       cJSON_GetObjectItemCaseSensitive(p, "policy")->valuestring,
		       num(p, "dense_weight_bytes_per_token", NULL), num(p, "variant_weight_bytes_per_token", NULL),
		       num(p, "bytes_ratio", NULL));
		for (int t = 1; t <= 2; t++) {
			char key[4];
			snprintf(key, sizeof key, "%d", t);
			const cJSON *o = cJSON_GetObjectItemCaseSensitive(th, key);
			printf("  %d thread%s: decode %.1f -> %.1f tok/s, paired speed-up %.2fx = %.2f x the bytes ratio\n", t,
			       t > 1 ? "s" : " ", num(o, "dense_decode_tokens_per_s", NULL),
			       num(o, "variant_decode_tokens_per_s", NULL), num(o, "paired_speedup", NULL),
			       num(o, "speedup_over_bytes_ratio", NULL));
		}
		cJSON_AddItemToArray(arr, p);
	}
}

/* ONNX Runtime against elide's prefill (ort.json, bench/ortpeer.sh): kept whole as
 * "onnxruntime", with a table of its rows. */
static void
report_ort(const char *dir, cJSON *res)
{
	cJSON *o = load(dir, "ort.json");
	if (!o)
		return;
	const cJSON *rows = cJSON_GetObjectItemCaseSensitive(o, "rows"), *r;
	printf("\nprefill against %s (paired rounds)\n"
	       "shape thr | check rel err | prefill tok/s elide    ORT  ratio\n",
	       cJSON_GetObjectItemCaseSensitive(o, "peer")->valuestring);
	cJSON_ArrayForEach(r, rows) {
		int ok = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r, "check_ok"));
		printf("%-5s %3.0f | %-6s %6.1e |", cJSON_GetObjectItemCaseSensitive(r, "shape")->valuestring,
		       num(r, "threads", NULL), ok ? "same" : "FAILED", num(r, "max_rel_err", NULL));
		if (ok)
			printf(" %19.1f %6.1f %6.2f  (%s graph)", num(r, "elide_prefill_tokens_per_s", NULL),
			       num(r, "ort_prefill_tokens_per_s", NULL), num(r, "paired_prefill_ratio", NULL),
			       cJSON_GetObjectItemCaseSensitive(r, "ort_graph")->valuestring);
		printf("\n");
	}
	cJSON_AddItemToObject(res, "onnxruntime", o);
}

/* llama.cpp against elide on the same weights (peers.json, bench/peers.sh, which
 * make bench does not run): kept whole as "peers" when the file is there. */
static void
report_peers(const char *dir, cJSON *res)
{
	cJSON *o = load(dir, "peers.json");
	if (o)
		cJSON_AddItemToObject(res, "peers", o);
}

/* The quantised runs (quant-NAME-FORMAT.json): blob sizes, paired decode and
 * prefill speed-ups against the f32 model. */
static void
report_quant(const char *dir, cJSON *res)
{
	char *names[64];
	int n = list(dir, "quant-", names, 64);
	cJSON *arr = cJSON_AddArrayToObject(res, "quant");
	if (n)
		printf("\nquantised weights against f32 (paired runs in one process)\n"
		       "shape format  blob   bytes/tok | thr  decode tok/s f32 -> q  speed-up | prefill tok/s f32 -> q  speed-up\n");
	for (int i = 0; i < n; i++) {
		cJSON *p = load(dir, names[i]);
		free(names[i]);
		if (!p)
			continue;
		const cJSON *th = cJSON_GetObjectItemCaseSensitive(p, "threads");
		for (int t = 1; t <= 2; t++) {
			char key[4];
			snprintf(key, sizeof key, "%d", t);
			const cJSON *o = cJSON_GetObjectItemCaseSensitive(th, key);
			printf("%-5s %-6s %5.3fx %6.2fx  | %3d  %7.1f -> %7.1f   %5.2fx  | %7.1f -> %7.1f   %5.2fx\n",
			       cJSON_GetObjectItemCaseSensitive(p, "name")->valuestring,
			       cJSON_GetObjectItemCaseSensitive(p, "format")->valuestring, num(p, "blob_ratio", NULL),
			       num(p, "bytes_ratio", NULL), t, num(o, "f32_decode_tokens_per_s", NULL),
			       num(o, "q_decode_tokens_per_s", NULL), num(o, "paired_decode_speedup", NULL),
			       num(o, "f32_prefill_tokens_per_s", NULL), num(o, "q_prefill_tokens_per_s", NULL),
			       num(o, "paired_prefill_speedup", NULL));
		}
		cJSON_AddItemToArray(arr, p);
	}
	if (n)
		printf("(blob: q blob / f32 blob; bytes/tok: f32 / q weight bytes per decoded token, the speed-up of a\n"
		       " purely bandwidth-bound decode; q8, q4: int8 activations, q8f, q4f: --activations=f32;\n"
		       " before the activations were recorded per param, q8/q4 meant f32 activations and a8 int8)\n");
}

/* The long-context runs (longctx-NAME.json): Quest decode against dense at several
 * positions, paired: whole step, attention (timed directly through the parallel-for
 * hook) and the rest of the step. */
static void
report_longctx(const char *dir, cJSON *res)
{
	char *names[64];
	int n = list(dir, "longctx-", names, 64);
	cJSON *arr = cJSON_AddArrayToObject(res, "longctx");
	if (n)
		printf("\nlong-context decode, Quest against dense (paired runs in one process)\n"
		       "model weights kvh   pos thr | step ms dense -> quest  tok/s dense -> quest  speed-up | attention ms "
		       "dense -> quest  speed-up | rest ms dense -> quest | KV bytes ratio | step bytes ratio\n");
	for (int i = 0; i < n; i++) {
		cJSON *p = load(dir, names[i]);
		free(names[i]);
		if (!p)
			continue;
		const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(p, "weight_format");
		const cJSON *ps, *pl = cJSON_GetObjectItemCaseSensitive(p, "positions");
		cJSON_ArrayForEach(ps, pl)
		{
			const cJSON *th = cJSON_GetObjectItemCaseSensitive(ps, "threads");
			for (int t = 1; t <= 2; t++) {
				char key[4];
				snprintf(key, sizeof key, "%d", t);
				const cJSON *o = cJSON_GetObjectItemCaseSensitive(th, key);
				if (!o)
					continue; /* LONG_THREADS=1 */
				printf("%-5s %-7s %3.0f %5.0f %3d | %7.1f -> %6.1f   %6.1f -> %6.1f    %5.2fx | %8.2f -> %6.2f    "
				       "%5.2fx | %6.1f -> %6.1f   | %5.2fx          | %5.2fx\n",
				       cJSON_GetObjectItemCaseSensitive(p, "name")->valuestring,
				       cJSON_IsString(fmt) ? fmt->valuestring : "?", num(p, "kv_heads", NULL),
				       num(ps, "position", NULL), t, num(o, "dense_step_ms", NULL), num(o, "quest_step_ms", NULL),
				       num(o, "dense_tokens_per_s", NULL), num(o, "quest_tokens_per_s", NULL),
				       num(o, "paired_step_speedup", NULL), num(o, "dense_attention_ms", NULL),
				       num(o, "quest_attention_ms", NULL), num(o, "paired_attention_speedup", NULL),
				       num(o, "dense_other_ms", NULL), num(o, "quest_other_ms", NULL), num(ps, "kv_bytes_ratio", NULL),
				       num(ps, "step_bytes_ratio", NULL));
			}
		}
		cJSON_AddItemToArray(arr, p);
	}
	if (n)
		printf("(attention: the attention tasks' parallel-for calls, timed through a hook, per step; rest: step\n"
		       " minus attention; steps of the two models alternate, milliseconds apart; speed-ups: medians of\n"
		       " the per-round ratios dense / Quest; KV bytes ratio: the keys and values dense attention reads\n"
		       " over the page bounds and chosen pages Quest reads; step bytes ratio: the same with the weights)\n");
}

int
main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: bench_report OUT_DIR results.json\n");
		return 2;
	}
	const char *dir = argv[1];
	cJSON *res = cJSON_CreateObject();
	char when[64];
	time_t now = time(NULL);
	strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
	cJSON_AddStringToObject(res, "date", when);
	cJSON *stream = load(dir, "stream.json"), *blas = load(dir, "blas.json");
	const cJSON *bshapes = cJSON_GetObjectItemCaseSensitive(blas, "shapes");
	double bw[3] = { 0, 0, 0 }; /* GB/s by threads ([0]: scratch) */
	if (stream) {
		const cJSON *t = cJSON_GetObjectItemCaseSensitive(stream, "threads");
		bw[1] = num(t, "1", "gbps_median");
		bw[2] = num(t, "2", "gbps_median");
		cJSON_AddItemToObject(res, "bandwidth", stream);
	}
	if (blas)
		cJSON_AddItemToObject(res, "openblas", blas);
	if (stream) /* BENCH_ONLY runs measure no bandwidth */
		printf("read bandwidth: %.2f GB/s (1 thread), %.2f GB/s (2 threads)\n", bw[1], bw[2]);

	char *names[64];
	int nk = list(dir, "kernel-", names, 64);
	cJSON *kern = cJSON_AddArrayToObject(res, "kernels");
	if (nk)
		printf("\n%-10s %6s %6s | %-23s | %-23s\n%-10s %6s %6s | %-23s | %-23s\n", "kernel", "n", "k",
		       "GEMV GFLOPS elide/blas", "GEMM GFLOPS elide/blas", "", "", "", "  1 thread    2 threads",
		       "  1 thread    2 threads");
	for (int i = 0; i < nk; i++) {
		cJSON *k = load(dir, names[i]);
		free(names[i]);
		if (!k)
			continue;
		const cJSON *nm = cJSON_GetObjectItemCaseSensitive(k, "name");
		const cJSON *b = shape(bshapes, cJSON_IsString(nm) ? nm->valuestring : "");
		double r[4] = { 0 };
		for (int th = 1; th <= 2; th++) {
			char t[4];
			snprintf(t, sizeof t, "%d", th);
			double bv = num(b, "sgemv_gflops", t), bm = num(b, "sgemm_gflops", t);
			r[th - 1] = bv > 0 ? num(k, "gemv_gflops", t) / bv : 0;
			r[th + 1] = bm > 0 ? num(k, "gemm_gflops", t) / bm : 0;
			/* paired runs in one process see the same load: prefer them */
			if (num(k, "paired_gemv_vs_openblas", t) > 0)
				r[th - 1] = num(k, "paired_gemv_vs_openblas", t);
			if (num(k, "paired_gemm_vs_openblas", t) > 0)
				r[th + 1] = num(k, "paired_gemm_vs_openblas", t);
		}
		cJSON *o = cJSON_AddObjectToObject(k, "vs_openblas");
		cJSON_AddNumberToObject(o, "gemv_1", r[0]);
		cJSON_AddNumberToObject(o, "gemv_2", r[1]);
		cJSON_AddNumberToObject(o, "gemm_1", r[2]);
		cJSON_AddNumberToObject(o, "gemm_2", r[3]);
		printf("%-10s %6.0f %6.0f | %5.1f %4.2fx %5.1f %4.2fx | %5.1f %4.2fx %5.1f %4.2fx\n", nm->valuestring,
		       num(k, "n", NULL), num(k, "k", NULL), num(k, "gemv_gflops", "1"), r[0], num(k, "gemv_gflops", "2"),
		       r[1], num(k, "gemm_gflops", "1"), r[2], num(k, "gemm_gflops", "2"), r[3]);
		cJSON_AddItemToArray(kern, k);
	}

	int nm = list(dir, "model-", names, 64);
	cJSON *models = cJSON_AddArrayToObject(res, "models");
	if (nm)
		printf("\n%-5s %3s | %9s %7s %6s %8s | %9s %8s %9s %10s\n", "model", "thr", "decode", "GB/s", "bw",
		       "of bw", "prefill", "GFLOPS", "blas", "of blas");
	for (int i = 0; i < nm; i++) {
		cJSON *m = load(dir, names[i]);
		free(names[i]);
		if (!m)
			continue;
		const char *name = cJSON_GetObjectItemCaseSensitive(m, "name")->valuestring;
		cJSON *th = cJSON_GetObjectItemCaseSensitive(m, "threads");
		for (int t = 1; t <= 2; t++) {
			char key[4];
			snprintf(key, sizeof key, "%d", t);
			cJSON *o = cJSON_GetObjectItemCaseSensitive(th, key);
			double gbps = num(o, "decode_gbps", NULL), frac = bw[t] > 0 ? gbps / bw[t] : 0;
			double bsec = blas_prefill_seconds(bshapes, name, m, t);
			double lin = num(m, "prefill_linear_flops", NULL);
			double bgf = bsec > 0 ? lin / bsec * 1e-9 : 0, pg = num(o, "prefill_linear_gflops", NULL);
			double pr = bgf > 0 ? pg / bgf : 0;
			cJSON_AddNumberToObject(o, "decode_bandwidth_fraction_vs_stream", frac);
			cJSON_AddNumberToObject(o, "openblas_prefill_linear_gflops_vs_blas_run", bgf);
			cJSON_AddNumberToObject(o, "prefill_vs_openblas_blas_run", pr);
			/* the paired figures (same process, adjacent runs) are the headline */
			if (num(o, "paired_decode_bandwidth_fraction", NULL) > 0) {
				frac = num(o, "paired_decode_bandwidth_fraction", NULL);
				bw[0] = num(o, "paired_read_gbps", NULL);
			} else {
				bw[0] = bw[t];
			}
			if (num(o, "paired_prefill_vs_openblas", NULL) > 0) {
				pr = num(o, "paired_prefill_vs_openblas", NULL);
				bgf = num(o, "paired_openblas_prefill_linear_gflops", NULL);
			}
			printf("%-5s %3d | %5.1f t/s %7.2f %6.2f %7.0f%% | %5.0f t/s %8.1f %9.1f %9.0f%%\n", name, t,
			       num(o, "decode_tokens_per_s", NULL), gbps, bw[0], 100 * frac,
			       num(o, "prefill_tokens_per_s", NULL), pg, bgf, 100 * pr);
		}
		cJSON_AddItemToArray(models, m);
	}
	if (nm)
		printf("(decode GB/s: weight bytes per token (manifest) x tokens/s; bw: read bandwidth (best of 3)\n"
		       " just before each decode run, same threads; of bw: median of the per-run ratios.  prefill GFLOPS:\n"
		       " matrix-product FLOPs / time; blas: OpenBLAS doing the same products right after each\n"
		       " prefill run, same threads; of blas: median of the per-run ratios)\n");
	report_policies(dir, res);
	report_quant(dir, res);
	report_ort(dir, res);
	report_peers(dir, res);
	report_longctx(dir, res);
	char *text = cJSON_Print(res);
	FILE *f = fopen(argv[2], "w");
	if (!f || fputs(text, f) < 0 || fputc('\n', f) < 0 || fclose(f) != 0) {
		perror(argv[2]);
		return 1;
	}
	printf("\nwrote %s\n", argv[2]);
	free(text);
	cJSON_Delete(res);
	return 0;
}
