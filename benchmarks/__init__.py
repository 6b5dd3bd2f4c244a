"""nbray's benchmark suite: nbray side by side with Ray and other Python parallel engines.

    make bench ──▶ benchmarks.run ──one fresh process tree each──▶ benchmarks.child ENGINE ...
                       │                                            │ engines/<adapter>.py
                       │◀── result JSON (per workload, per repeat) ─┘ workloads.py
                       └──▶ results/latest.json + results/latest.md (report.py)

See benchmarks/README.md for what is measured and how to read the tables.
"""
