"""The ``sm-imgclf`` command and the end-to-end demo."""
