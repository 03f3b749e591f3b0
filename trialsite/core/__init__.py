"""The foundation every app stands on: sites, roles and access, the audit trail, signatures,
the trial's clock, and the protocol's definition with the registry through which each app
loads its own part of it. It imports no app."""
