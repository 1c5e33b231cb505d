/* Smoke test of the software driver from C, against plain Level Zero 1.x:
 * host memory, an event, an immediate command list, a barrier that waits on
 * a host-signalled event, a memory fill. Exits 0 on success.
 * Build: cc smoke.c $(pkg-config --cflags --libs level-zero)
 * Run:   ZE_ENABLE_ALT_DRIVERS=/abs/path/libze_software_driver.so ./a.out */
#include <ze_api.h>

#include "check.h"

#include <stdint.h>
#include <stdio.h>

int main(void) {
    CHECK(zeInit(0));

    uint32_t count = 1;
    ze_driver_handle_t driver;
    CHECK(zeDriverGet(&count, &driver));
    count = 1;
    ze_device_handle_t device;
    CHECK(zeDeviceGet(driver, &count, &device));

    ze_context_desc_t context_desc = {ZE_STRUCTURE_TYPE_CONTEXT_DESC, NULL, 0};
    ze_context_handle_t context;
    CHECK(zeContextCreate(driver, &context_desc, &context));

    enum { SIZE = 4096 };
    ze_host_mem_alloc_desc_t host_desc = {ZE_STRUCTURE_TYPE_HOST_MEM_ALLOC_DESC, NULL, 0};
    unsigned char *buffer;
    CHECK(zeMemAllocHost(context, &host_desc, SIZE, 64, (void **)&buffer));
    buffer[0] = 0;

    ze_event_pool_desc_t pool_desc = {ZE_STRUCTURE_TYPE_EVENT_POOL_DESC, NULL,
                                      ZE_EVENT_POOL_FLAG_HOST_VISIBLE, 2};
    ze_event_pool_handle_t pool;
    CHECK(zeEventPoolCreate(context, &pool_desc, 1, &device, &pool));
    ze_event_desc_t event_desc = {ZE_STRUCTURE_TYPE_EVENT_DESC, NULL, 0,
                                  ZE_EVENT_SCOPE_FLAG_HOST, ZE_EVENT_SCOPE_FLAG_HOST};
    ze_event_handle_t gate, done;
    CHECK(zeEventCreate(pool, &event_desc, &gate));
    event_desc.index = 1;
    CHECK(zeEventCreate(pool, &event_desc, &done));

    ze_command_queue_desc_t queue_desc = {ZE_STRUCTURE_TYPE_COMMAND_QUEUE_DESC, NULL, 0, 0, 0,
                                          ZE_COMMAND_QUEUE_MODE_ASYNCHRONOUS,
                                          ZE_COMMAND_QUEUE_PRIORITY_NORMAL};
    ze_command_list_handle_t list;
    CHECK(zeCommandListCreateImmediate(context, device, &queue_desc, &list));

    /* The fill waits behind a barrier on an event only the host signals. */
    CHECK(zeCommandListAppendBarrier(list, NULL, 1, &gate));
    unsigned char pattern = 0xAB;
    CHECK(zeCommandListAppendMemoryFill(list, buffer, &pattern, 1, SIZE, NULL, 0, NULL));
    CHECK(zeCommandListAppendBarrier(list, done, 0, NULL));
    if (zeEventQueryStatus(done) != ZE_RESULT_NOT_READY || buffer[0] != 0) {
        fprintf(stderr, "the fill ran before its barrier's event was signalled\n");
        return 1;
    }
    CHECK(zeEventHostSignal(gate));
    CHECK(zeEventHostSynchronize(done, UINT64_MAX));
    for (int i = 0; i < SIZE; i++) {
        if (buffer[i] != 0xAB) {
            fprintf(stderr, "byte %d is 0x%x after the fill\n", i, buffer[i]);
            return 1;
        }
    }

    CHECK(zeCommandListDestroy(list));
    CHECK(zeEventDestroy(done));
    CHECK(zeEventDestroy(gate));
    CHECK(zeEventPoolDestroy(pool));
    CHECK(zeMemFree(context, buffer));
    CHECK(zeContextDestroy(context));
    printf("smoke: ok\n");
    return 0;
}
