"""Settings of the engine's plan thresholds (fastnorm._cpu._engine._tuning) that
force each of its plan choices; test_plans.py and test_fma.py run under each."""

PLAN_SETTINGS = [
    dict(plane_batch=3),
    dict(plane_batch=1, small_planes=False),
    dict(wave_bytes=1 << 12, ct_round_bytes=1),
    dict(wave_bytes=1 << 12, ct_round_bytes=1 << 10, backward_min_bytes=0),
    dict(small_planes=False),
    dict(pipeline_max_bytes=0),
    dict(pipeline_max_bytes=1 << 30),
    dict(wave_bytes=1 << 12),
    dict(small_planes=False, pipeline_max_bytes=0, wave_bytes=1 << 14),
    dict(backward_min_bytes=0),
    dict(backward_min_bytes=0, wave_bytes=1 << 12),
    dict(backward_min_bytes=0, pipeline_max_bytes=0),
    dict(stream_above_bytes=0),
    dict(stream_above_bytes=0, wave_bytes=1 << 12),
    dict(stream_above_bytes=0, small_planes=False, pipeline_max_bytes=0, backward_min_bytes=0),
    dict(cl_rows_above_bytes=0),
    dict(cl_rows_above_bytes=0, wave_bytes=1 << 12),
]
