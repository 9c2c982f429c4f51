"""What `make bench` measures and the performance targets it compares against."""

TASK = "brain-stroke"
BATCH = 16  # TF Serving's max_batch_size (batching.config) and the gateway's CT_MAX_BATCH_SIZE
LEVELS = (1, 4, 16, 32)
STALLED = 100  # slow-loris uploads held open during one concurrency-16 level
C1_OVERHEAD_MS = 5.0  # gateway p50 at concurrency 1 <= bare batch-1 p50 + 5 ms
SERVER_OVERHEAD_MS = 2.0  # model server CPU per request <= the forward pass's per image + 2 ms
C16_RATIO = 0.9  # gateway req/s at concurrency 16 >= 0.9 x bare batch-16 images/s, 0 errors
RSS_LIMIT_MB = 120.0  # gateway worker RSS <= 120 MB (10^6 bytes)
MIB = 1024 * 1024
