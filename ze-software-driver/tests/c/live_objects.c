/* The live-objects extension from C, through include/ze_software_driver.h.
 * Exits 0 on success. */
#include "ze_software_driver.h"

#include "check.h"

#include <stdio.h>

int main(void) {
    CHECK(zeInit(0));
    uint32_t count = 1;
    ze_driver_handle_t driver;
    CHECK(zeDriverGet(&count, &driver));

    zex_pfnSoftwareDriverGetLiveObjects_t get_live_objects = NULL;
    CHECK(zeDriverGetExtensionFunctionAddress(driver, ZEX_SOFTWARE_DRIVER_GET_LIVE_OBJECTS_NAME,
                                              (void **)&get_live_objects));

    ze_context_desc_t context_desc = {ZE_STRUCTURE_TYPE_CONTEXT_DESC, NULL, 0};
    ze_context_handle_t context;
    CHECK(zeContextCreate(driver, &context_desc, &context));
    ze_host_mem_alloc_desc_t host_desc = {ZE_STRUCTURE_TYPE_HOST_MEM_ALLOC_DESC, NULL, 0};
    void *memory;
    CHECK(zeMemAllocHost(context, &host_desc, 777, 0, &memory));

    zex_software_driver_live_objects_t live;
    CHECK(get_live_objects(&live));
    if (live.contexts != 1 || live.allocations != 1 || live.allocated_bytes != 777 ||
        live.host_alloc_calls != 1 || live.host_free_calls != 0) {
        fprintf(stderr, "unexpected counts while allocated\n");
        return 1;
    }

    CHECK(zeMemFree(context, memory));
    CHECK(zeContextDestroy(context));
    CHECK(get_live_objects(&live));
    if (live.contexts != 0 || live.allocations != 0 || live.allocated_bytes != 0 ||
        live.host_free_calls != 1) {
        fprintf(stderr, "unexpected counts after the frees\n");
        return 1;
    }
    if (get_live_objects(NULL) != ZE_RESULT_ERROR_INVALID_NULL_POINTER) {
        fprintf(stderr, "a null output is not rejected\n");
        return 1;
    }
    printf("live_objects: ok\n");
    return 0;
}
