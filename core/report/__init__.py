"""What runs leave behind: the run directory and atomic writes (`outputs`), progress on the
terminal (`progress`), and tables and plots that compare runs (`compare`)."""
