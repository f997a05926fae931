/* Pool: blocking file reads on a few worker threads, so that the connection keeps being served
 * while the disk works and several reads of one file are answered in whatever order they finish.
 *
 * Threads: the loop thread (lws service) submits jobs and gets them back in pool_drain; workers
 * only run job->run. A finished job is put on the done list and the loop is woken with
 * lws_cancel_service (safe from any thread), which lands in LWS_CALLBACK_EVENT_WAIT_CANCELLED.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#include "provider_internal.h"

struct pool {
    struct lws_context *context;
    pthread_t threads[POOL_THREADS];
    size_t nthreads;
    pthread_mutex_t lock;
    pthread_cond_t work;
    struct pool_job *queue_head; /* waiting for a worker, oldest first */
    struct pool_job *queue_tail;
    struct pool_job *done_head; /* finished, waiting for pool_drain, oldest first */
    struct pool_job *done_tail;
    size_t jobs; /* submitted and not yet drained; at most POOL_MAX_JOBS */
    bool stopping;
};

static void job_append(struct pool_job **head, struct pool_job **tail, struct pool_job *job)
{
    job->next = NULL;
    if (*tail)
        (*tail)->next = job;
    else
        *head = job;
    *tail = job;
}

static void *pool_worker(void *arg)
{
    struct pool *pool = arg;
    pthread_mutex_lock(&pool->lock);
    for (;;) {
        while (!pool->stopping && !pool->queue_head)
            pthread_cond_wait(&pool->work, &pool->lock);
        if (pool->stopping)
            break;
        struct pool_job *job = pool->queue_head;
        pool->queue_head = job->next;
        if (!pool->queue_head)
            pool->queue_tail = NULL;
        pthread_mutex_unlock(&pool->lock);

        job->run(job);

        pthread_mutex_lock(&pool->lock);
        bool wake = pool->done_head == NULL; /* else a wake-up is already on its way */
        job_append(&pool->done_head, &pool->done_tail, job);
        if (wake)
            lws_cancel_service(pool->context);
    }
    pthread_mutex_unlock(&pool->lock);
    return NULL;
}

int pool_new(struct lws_context *context, struct pool **out)
{
    struct pool *pool = calloc(1, sizeof(*pool));
    if (!pool)
        return -ENOMEM;
    pool->context = context;
    pthread_mutex_init(&pool->lock, NULL);
    pthread_cond_init(&pool->work, NULL);
    for (; pool->nthreads < POOL_THREADS; pool->nthreads++)
        if (pthread_create(&pool->threads[pool->nthreads], NULL, pool_worker, pool) != 0)
            break;
    if (pool->nthreads == 0) {
        pool_free(pool, NULL);
        return -EAGAIN;
    }
    *out = pool;
    return 0;
}

bool pool_submit(struct pool *pool, struct pool_job *job)
{
    if (!pool)
        return false;
    pthread_mutex_lock(&pool->lock);
    bool room = pool->jobs < POOL_MAX_JOBS;
    if (room) {
        pool->jobs++;
        job->cancelled = false;
        job_append(&pool->queue_head, &pool->queue_tail, job);
        pthread_cond_signal(&pool->work);
    }
    pthread_mutex_unlock(&pool->lock);
    return room;
}

/* Hands every job of a detached list to its done callback. */
static void jobs_finish(struct provider *p, struct pool_job *job, bool cancelled)
{
    while (job) {
        struct pool_job *next = job->next;
        job->cancelled = job->cancelled || cancelled;
        job->done(p, job);
        job = next;
    }
}

void pool_drain(struct pool *pool, struct provider *p)
{
    pthread_mutex_lock(&pool->lock);
    struct pool_job *done = pool->done_head;
    pool->done_head = pool->done_tail = NULL;
    for (struct pool_job *job = done; job; job = job->next)
        pool->jobs--;
    pthread_mutex_unlock(&pool->lock);
    jobs_finish(p, done, false);
}

void pool_free(struct pool *pool, struct provider *p)
{
    if (!pool)
        return;
    pthread_mutex_lock(&pool->lock);
    pool->stopping = true;
    pthread_cond_broadcast(&pool->work);
    pthread_mutex_unlock(&pool->lock);
    for (size_t i = 0; i < pool->nthreads; i++)
        pthread_join(pool->threads[i], NULL);
    /* Nothing is answered any more; every job still gives back what it holds. */
    jobs_finish(p, pool->done_head, true);
    jobs_finish(p, pool->queue_head, true);
    pthread_cond_destroy(&pool->work);
    pthread_mutex_destroy(&pool->lock);
    free(pool);
}
