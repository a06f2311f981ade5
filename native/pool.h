/*
 * A small persistent pthread pool for the sgemm driver. One job at a time: the caller publishes a task count,
 * takes tasks itself, and returns when every task is done. Workers spin briefly between jobs (a training step
 * issues matrix products back to back) and then sleep on a condition variable, so an idle process costs nothing.
 */
#ifndef JANUS4O_POOL_H
#define JANUS4O_POOL_H

#include <stdint.h>

typedef void (*pool_fn)(void *ctx, int64_t task);

/* Runs fn(ctx, t) for t in [0, ntasks), on the pool when it has workers and is free, else on the caller. */
void pool_run(pool_fn fn, void *ctx, int64_t ntasks);

/* Total threads taking part in a job, the caller included (>= 1). Recreates the workers. */
void pool_set_threads(int n);
int pool_threads(void);

/* Stops and joins the workers (the addon's environment cleanup hook). */
void pool_shutdown(void);

#endif
