/* prune_slice.c - slicing one param for structured pruning: keep blocks of rows or
 * columns, rewriting its data (when loaded), its type and its hash.  Removing whole
 * layers and residual blocks is in pass_layers.c. */
#include "passes/prune.h"
#include "passes/passes.h"

#include <stdlib.h>
#include <string.h>

void
prune_slice_param(Module *m, int32_t pi, bool cols, const bool *kept, int64_t nunits, int64_t block)
{
	Param *p = &m->params[pi];
	Type t = p->type;
	int64_t rows = t.rank == 2 ? t.dims[0] : 1, ncols = t.rank == 2 ? t.dims[1] : t.dims[0];
	if (t.rank == 1)
		cols = true;
	int64_t nk = 0;
	for (int64_t u = 0; u < nunits; u++)
		nk += kept[u];
	int64_t nrows = cols ? rows : nk * block, ncols2 = cols ? nk * block : ncols;
	if (p->data) {
		float *d = xmalloc((size_t)(nrows * ncols2 > 0 ? nrows * ncols2 : 1) * sizeof *d);
		int64_t o = 0;
		for (int64_t r = 0; r < rows; r++) {
			if (!cols && !kept[r / block])
				continue;
			for (int64_t c = 0; c < ncols; c++)
				if (!cols || kept[c / block])
					d[o++] = p->data[r * ncols + c];
		}
		free(p->data);
		p->data = d;
		p->hash = hash_data(d, (size_t)o * sizeof *d, 0);
	}
	/* a quantised param (pruning normally runs first) is quantised again from its
	 * dequantised values once its new shape is set */
	QFormat qf = p->format;
	int qg = p->group;
	free(p->qdata);
	p->qdata = NULL;
	p->format = QF_F32;
	if (t.rank == 2) {
		p->type.dims[0] = nrows;
		p->type.dims[1] = ncols2;
	} else {
		p->type.dims[0] = ncols2;
	}
	char err[256];
	if (qf != QF_F32 && p->data && !ir_quantize_param(p, qf, qg, err, sizeof err))
		ELIDE_ICE(err);
}
