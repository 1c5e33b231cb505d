/* CHECK(call): exit(1) with a message unless the Level Zero call succeeds. */
#ifndef CHECK_H
#define CHECK_H

#include <stdio.h>
#include <stdlib.h>

#define CHECK(call)                                                        \
    do {                                                                   \
        ze_result_t result_ = (call);                                      \
        if (result_ != ZE_RESULT_SUCCESS) {                                \
            fprintf(stderr, "%s:%d: %s returned 0x%x\n", __FILE__,         \
                    __LINE__, #call, (unsigned)result_);                   \
            exit(1);                                                       \
        }                                                                  \
    } while (0)

#endif /* CHECK_H */
