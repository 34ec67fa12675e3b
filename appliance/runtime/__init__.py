"""What runs processes: the portal under gunicorn, the model server beside it, the pid file and detaching,
the service manager's view of Almanac, and the network addresses it is reached at. No Flask views here."""
