"""People, roles and sign-in: users, sessions, per-person API tokens, OIDC and GitHub OAuth (docs/auth.md).

`roles` holds the one rule that gives every request its required role; `people` the users, their
identities, sessions and tokens (stored hashed); `oidc` and `github` the sign-in clients; `secrets`
the hashing; `status` the line `factory doctor` prints.
"""
