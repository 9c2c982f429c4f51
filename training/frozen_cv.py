"""`python -m training.frozen_cv`: the command brain-stroke v4's model card names, kept working;
the recipe is training/crossval/frozen.py (`python -m training.crossval.frozen`)."""

from training.crossval.frozen import main

if __name__ == "__main__":
    main()
