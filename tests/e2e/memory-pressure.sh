#!/usr/bin/env bash
# memory-pressure: a loop device on a fused volume does not deadlock when
# peerd, fused and fio share one memory cgroup with a tight limit (cgroup v2
# memory.max, or the v1 memory controller of a hybrid hierarchy). A thin
# wrapper around bench/memory-pressure.sh (which does its own set-up and
# cleanup, and does not use common.sh), sized to finish well within ctest's
# 300 s: a 512M volume under a 192M limit, fio writes the whole volume
# buffered plus ~20% of it direct (~610M in all), at most 120 s for fio. It
# must reach the limit (PV_MEMTEST_REQUIRE_PRESSURE=1). Every PV_MEMTEST_*
# variable set by the caller wins; PV_BUILD comes from ctest.
export PV_MEMTEST_SIZE=${PV_MEMTEST_SIZE:-512M}
export PV_MEMTEST_MAX=${PV_MEMTEST_MAX:-192M}
export PV_MEMTEST_RANDOM=${PV_MEMTEST_RANDOM:-20%}
export PV_MEMTEST_TIMEOUT=${PV_MEMTEST_TIMEOUT:-120}
export PV_MEMTEST_REQUIRE_PRESSURE=${PV_MEMTEST_REQUIRE_PRESSURE:-1}
exec bash "$(dirname "$0")/../../bench/memory-pressure.sh"
