"""The pages of the second factor: verifying at login, enrolling an authenticator app,
recovery codes, and removing a lost device. The rules and writes are trialsite/core/mfa.py."""
