/* Extensions of the Level Zero software driver (ze-software-driver).
 *
 * Look the function up with
 *   zex_pfnSoftwareDriverGetLiveObjects_t get_live_objects;
 *   zeDriverGetExtensionFunctionAddress(driver, ZEX_SOFTWARE_DRIVER_GET_LIVE_OBJECTS_NAME,
 *                                       (void **)&get_live_objects);
 * It takes no handles, so it works with the loader's intercept layer on. */
#ifndef ZE_SOFTWARE_DRIVER_H
#define ZE_SOFTWARE_DRIVER_H

#include <stdint.h>

#include <ze_api.h>

#ifdef __cplusplus
extern "C" {
#endif

#define ZEX_SOFTWARE_DRIVER_GET_LIVE_OBJECTS_NAME "zexSoftwareDriverGetLiveObjects"

/* Process-wide counts of the driver's live objects. */
typedef struct zex_software_driver_live_objects_t {
    uint64_t allocations;      /* live zeMemAlloc{Host,Device,Shared} allocations */
    uint64_t allocated_bytes;  /* their total size */
    uint64_t event_pools;
    uint64_t events;
    uint64_t command_lists;    /* regular and immediate */
    uint64_t command_queues;
    uint64_t fences;
    uint64_t contexts;
    uint64_t host_alloc_calls; /* successful zeMemAllocHost calls so far */
    uint64_t host_free_calls;  /* successful frees of host allocations so far */
} zex_software_driver_live_objects_t;

/* Fills *live; ZE_RESULT_ERROR_INVALID_NULL_POINTER if live is NULL. */
typedef ze_result_t (ZE_APICALL *zex_pfnSoftwareDriverGetLiveObjects_t)(
    zex_software_driver_live_objects_t *live);

#ifdef __cplusplus
}
#endif

#endif /* ZE_SOFTWARE_DRIVER_H */
