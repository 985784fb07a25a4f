// libtorch's intra-op thread count. With the OpenMP backend the count is per calling thread, so the
// count the user asked for is remembered here and applied on every thread that runs a forward.
// This mirrors libtorch's own process-wide setting; it holds no JS state.
#pragma once

#include <string>

namespace easyroutine {

void SetIntraOpThreads(int count);  // applies on the calling thread and remembers it for the others
int IntraOpThreads();
int OpenBlasThreads();  // the size of OpenBLAS's own pool, which SetIntraOpThreads sets too; 0 without OpenBLAS
void ApplyIntraOpThreads();  // on a forward's thread, before it runs
// OMP_WAIT_POLICY as libgomp read it when libtorch loaded (lib/core/binding.ts sets PASSIVE unless the
// user set one); empty when unset. The first call records it: the addon's Init makes that call.
const std::string& OmpWaitPolicyAtLoad();

}  // namespace easyroutine
