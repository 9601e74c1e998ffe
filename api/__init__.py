"""The HTTP service and the jobs: the FastAPI app (:mod:`api.app`), the dependencies routes share
(:mod:`api.deps`), the audit log, the routes (:mod:`api.routes`), their schemas and problem
documents, the settings, the clock, the scheduler's jobs and the job leader.

The only layer below the command line that reads the environment (:mod:`api.settings`) or the
clock; it may import the market and metering, never the command line or the demo.
"""
