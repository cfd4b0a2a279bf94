"""`kind = "image_folder"`: a folder of class folders, `root/<label>/<image files>`.

    [source]
    kind = "image_folder"
    root = "images"               # relative to the catalog file; "{cache}" = $WINNOW_CACHE
    allow_outside_root = false    # follow symlinks that leave the root

Every non-hidden file below a class folder is a row: one whose extension is not an image format
Winnow reads is refused as `unsupported_format` (never opened), a symlink leading out of the root
as `outside_root`. Hidden files and folders and files beside the class folders are not rows; the
listing counts them (`skipped`), and the summary shows the counts.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from winnow.catalogs.errors import EmptyDataset, MissingRoot
from winnow.catalogs.keys import reject_unknown, resolve_path, typed
from winnow.catalogs.sources.base import Listing
from winnow.catalogs.sources.local import LocalFileSource, is_within, real_path, unlistable

# File names (lower-cased) a class folder lists as images: the extensions Pillow registers for
# the formats embeddings.images decodes (PNG, JPEG, MPO, WebP, GIF, BMP, TIFF, AVIF); tests/unit/embeddings/test_images.py
# keeps the two in step. Any other non-hidden file in a class folder becomes a row with reason
# `unsupported_format`; which decoder reads an image is decided by its bytes, not its name.
IMAGE_EXTENSIONS = (".png", ".apng", ".jpg", ".jpeg", ".jpe", ".jfif", ".mpo", ".webp", ".gif", ".bmp",
                    ".tif", ".tiff", ".avif", ".avifs")

SKIPPED_KINDS = ("hidden", "outside_class_folders")
"""Why a file of an image folder is not a row: a hidden file or folder (.DS_Store, ._x, .git:
each counted once, never opened or walked), or a file beside the class folders (it has no label)."""


@dataclass(frozen=True, kw_only=True)
class ImageFolderSource(LocalFileSource):
    kind = "image_folder"
    description = "class folders of image files: root/<label>/<file> (unlabeled: every file below root, one class)"

    # An unlabeled folder (a scrape, a camera roll): every file below root, in any subfolder, is a
    # row of one class named after the folder. Its duplicates, outliers, image-quality problems and
    # unusable files are found; with one class there are no labels to judge. Off by default: a
    # folder of images without class folders is more often a class folder passed instead of its
    # parent, which must stay an error.
    unlabeled: bool = False

    @classmethod
    def from_table(cls, table: dict[str, Any], *, base_dir: Path, where: str) -> ImageFolderSource:
        reject_unknown(table, {"root", "allow_outside_root", "unlabeled"}, where)
        return cls(root=resolve_path(typed(table, "root", str, where, required=True), base_dir),
                   allow_outside_root=typed(table, "allow_outside_root", bool, where) or False,
                   unlabeled=typed(table, "unlabeled", bool, where) or False)

    def list_samples(self) -> Listing:
        root = self.root
        if not root.is_dir():
            raise MissingRoot(f"image folder {str(root)!r} does not exist or is not a folder")
        real_root = root.resolve()
        paths, files, labels, refusals = [], [], [], []
        skipped = dict.fromkeys(SKIPPED_KINDS, 0)
        # Sorted walk so the table's order does not depend on the file system.
        loose: list[Path] = []  # files beside the class folders
        try:
            class_dirs = []
            for entry in sorted(root.iterdir()):
                if entry.name.startswith("."):
                    skipped["hidden"] += 1
                elif entry.is_dir():
                    class_dirs.append(entry)
                else:
                    loose.append(entry)
        except OSError as exc:
            unlistable(exc)

        def add(full: Path, label: str, escapes: bool) -> None:
            refused = None if full.name.lower().endswith(IMAGE_EXTENSIONS) else "unsupported_format"
            if (escapes or full.is_symlink()) and not self.allow_outside_root:
                if not is_within(real_path(full), real_root):
                    refused = "outside_root"
            paths.append(full.relative_to(root).as_posix())
            files.append(str(full.absolute()))
            labels.append(label)
            refusals.append(refused)

        loose_images = [f.name for f in loose if f.name.lower().endswith(IMAGE_EXTENSIONS)]
        one_label = real_root.name or "images"  # unlabeled: the one class, named after the folder
        if self.unlabeled:
            for entry in loose:
                add(entry, one_label, False)
            # Every subfolder is walked below like a class folder, its files under the one label.
        else:
            skipped["outside_class_folders"] += len(loose)
        for class_dir in class_dirs:
            # os.walk descends into its top folder even when that is a symlink, so a class
            # folder linked out of the root would expose every file below it.
            class_escapes = class_dir.is_symlink() and not is_within(real_path(class_dir), real_root)
            for dirpath, dirnames, filenames in os.walk(class_dir, followlinks=False, onerror=unlistable):
                skipped["hidden"] += sum(d.startswith(".") for d in dirnames)
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                for fname in sorted(filenames):
                    if fname.startswith("."):  # .DS_Store, ._x (AppleDouble), editor swap files
                        skipped["hidden"] += 1
                        continue
                    add(Path(dirpath) / fname, one_label if self.unlabeled else class_dir.name, class_escapes)
        if all(r == "unsupported_format" for r in refusals):
            raise EmptyDataset(
                f"image folder {str(root)!r} has no images: expected "
                + ("image files below it" if self.unlabeled else "class_name/<file>")
                + f" with an extension in {{{','.join(IMAGE_EXTENSIONS)}}}"
                + (f"; found only other files, e.g. {paths[:3]!r}" if paths else "")
                + (f"; {len(loose_images)} image file(s) lie directly in it, e.g. {loose_images[:3]!r}: if it is "
                   "one class's folder, pass the folder above it; to find duplicates, outliers and unusable files "
                   "in a folder without labels, pass --unlabeled" if loose_images and not class_dirs else "")
            )
        return Listing.from_rows(paths=paths, locators=files, abs_paths=files, labels=labels, refused=refusals,
                                 skipped=skipped)
