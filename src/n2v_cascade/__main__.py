"""``python -m n2v_cascade``: the command line (also what ``train --processes`` starts)."""

from .cli import main

if __name__ == "__main__":
    main()
