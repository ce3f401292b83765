"""saga_svc: runs the application's sagas (see myko/saga.py)."""
