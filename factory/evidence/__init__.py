"""Proof of work: Factory's own evidence of what an agent built (docs/proof-of-work.md).

`store`: the content-addressed artifact store and the per-task evidence records; `junit`: JUnit XML
read safely; `report`: the texts made from a record (PR comment, the agent's next prompt, verdict line).
"""
