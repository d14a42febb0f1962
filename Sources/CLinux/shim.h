#ifndef CACHE_GATEWAY_CLINUX_SHIM_H
#define CACHE_GATEWAY_CLINUX_SHIM_H

// Linux's readiness and wake-up calls, which Glibc's Swift module does not
// export: epoll and eventfd (and prctl, to name a loop's thread, and the
// thread's CPU affinity). Only `GatewaySystem`'s `Epoll` and `EventWaker`
// use them; no C type leaves those classes.
#ifdef __linux__
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

static inline int cache_gateway_epoll_create(void) {
    return epoll_create1(EPOLL_CLOEXEC);
}

// `epoll_event` is packed on x86-64; Swift cannot take the address of its
// `data` member, so registration goes through these two wrappers.
static inline int cache_gateway_epoll_ctl(int epfd, int op, int fd, unsigned int events, unsigned long long token) {
    struct epoll_event event;
    event.events = events;
    event.data.u64 = token;
    return epoll_ctl(epfd, op, fd, &event);
}

// Waits for at most `capacity` events and writes each one's token and events
// to the two arrays, so that the packed struct stays in C.
static inline int cache_gateway_epoll_wait(int epfd, struct epoll_event *scratch, int capacity, int timeout,
                                           unsigned long long *tokens, unsigned int *events) {
    int count = epoll_wait(epfd, scratch, capacity, timeout);
    for (int i = 0; i < count; i++) {
        tokens[i] = scratch[i].data.u64;
        events[i] = scratch[i].events;
    }
    return count;
}

static inline int cache_gateway_epoll_event_size(void) { return (int)sizeof(struct epoll_event); }

// accept4 is a GNU extension that Glibc's Swift module hides.
static inline int cache_gateway_accept_nonblocking(int fd) {
    return accept4(fd, 0, 0, SOCK_NONBLOCK | SOCK_CLOEXEC);
}

static inline int cache_gateway_eventfd(void) {
    return eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
}

// Names the calling thread (at most 15 bytes are kept), for `top -H` and perf.
static inline void cache_gateway_set_thread_name(const char *name) {
    (void)prctl(PR_SET_NAME, (unsigned long)name, 0UL, 0UL, 0UL);
}

// The CPUs the calling thread may run on (its affinity, as `taskset` sets
// it), as a bit mask written to `mask`; returns the mask's length in bytes,
// or -1 with errno. The raw system call, because glibc declares
// sched_getaffinity only under _GNU_SOURCE.
static inline long cache_gateway_sched_getaffinity(unsigned char *mask, unsigned long size) {
    return syscall(SYS_sched_getaffinity, 0, size, mask);
}

static const int cache_gateway_epoll_ctl_add = EPOLL_CTL_ADD;
static const int cache_gateway_epoll_ctl_mod = EPOLL_CTL_MOD;
static const int cache_gateway_epoll_ctl_del = EPOLL_CTL_DEL;
static const unsigned int cache_gateway_epollin = EPOLLIN;
static const unsigned int cache_gateway_epollout = EPOLLOUT;
static const unsigned int cache_gateway_epollerr = EPOLLERR;
static const unsigned int cache_gateway_epollhup = EPOLLHUP;
static const unsigned int cache_gateway_epollrdhup = EPOLLRDHUP;
#endif

#endif
