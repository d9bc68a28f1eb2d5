"""`tf demo`: a throwaway gateway, fake GitHub and Stripe, a scripted agent (no network)."""
