/*-------------------------------------------------------------------------
 *
 * phi3.c
 *	  Entry point of the phi3 extension: the module magic and _PG_init.
 *
 * _PG_init does nothing but call one init function per part of the glue:
 * the settings first (the model cache reads phi3.model), the statistics
 * (which reserve shared memory when the library is in
 * shared_preload_libraries), the asynchronous fill (its shared memory and
 * launcher, in that case too), then the model cache, which maps the model in
 * the postmaster in that case.  Everything else happens lazily on the first
 * SQL call in a backend.
 *
 * IDENTIFICATION
 *	  src/pg/phi3.c
 *
 *-------------------------------------------------------------------------
 */
#include "pg_phi3.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

/*
 * Register the settings and prepare the model cache (preloading the model
 * when loaded through shared_preload_libraries).
 */
void
_PG_init(void)
{
	GucInit();
	Phi3StatsInit();
	Phi3AsyncInit();
	ModelCacheInit();
}
