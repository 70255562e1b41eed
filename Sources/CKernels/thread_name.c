// Thread naming for FlowRuntime's helper threads (Parallel.Team): glibc's
// pthread_setname_np is a GNU extension that Swift's Glibc module does not
// export. See include/ckernels.h.
#define _GNU_SOURCE
#include "ckernels.h"

#include <pthread.h>

int fr_name_this_thread(const char *name) {
#if defined(__linux__)
    return pthread_setname_np(pthread_self(), name);
#else
    (void)name;
    return -1;
#endif
}
