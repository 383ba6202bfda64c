"""What people see: terminal tables (`render`), the live run display (`progress`), the HTML
report (`report`)."""
