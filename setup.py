from setuptools import find_packages, setup

setup(
    name="gluon-bof",
    version="0.1.0",
    description="Bag of Freebies for object detection (YOLOv3, Faster R-CNN) on PyTorch, in GluonCV's style",
    packages=find_packages(include=["gluon_bof", "gluon_bof.*"]),
    package_data={"gluon_bof.model_zoo": ["gluoncv_sha1.txt", "zoo.csv"]},
    python_requires=">=3.10",
    install_requires=[
        "torch>=2.1",
        "torchvision>=0.16",
        "numpy",
        "opencv-python-headless",
        "pycocotools",
        "tqdm",
        "matplotlib",
        "safetensors>=0.4",
    ],
    extras_require={"test": ["pytest", "faster-coco-eval"], "fast": ["faster-coco-eval"]},
)
