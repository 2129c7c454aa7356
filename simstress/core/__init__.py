"""The core every metric and task module builds on: registries, the metric and task protocols, input validation,
shared linear algebra, exact distance selection, task scoring rules, synthetic data, the paper's closed forms,
the conformance suite and the artifact store. Nothing here imports a metric family, a task or the runner.
"""
