"""The linear algebra behind common.py's Gaussians, none of it the walkthrough's math: the
Cholesky factor, the inverse and the log-determinant of a batch of covariances (..., d, d).

The roll's points are 2-D, so what a 2x2 covariance [[a, b], [b, c]] needs is written out in
closed form: batched torch.linalg calls on thousands of tiny matrices are ten times slower. The
images of chapters 8-9 (d = 64) take steps of isotropic covariance, where the diagonal is all
there is to factor; any other covariance goes through torch.linalg.
"""
import torch


def cholesky_2x2(cov):
    """The lower-triangular L with L L^T = cov: L = [[sqrt(a), 0], [b / sqrt(a), sqrt(c - b^2 / a)]]
    (a zero covariance gives L = 0, so a point mass can be "sampled" too)."""
    a, b, c = cov[..., 0, 0], cov[..., 1, 0], cov[..., 1, 1]
    l11 = torch.sqrt(a)
    l21 = torch.where(l11 > 0, b / l11.clamp_min(torch.finfo(a.dtype).tiny), torch.zeros_like(b))
    l22 = torch.sqrt((c - l21 ** 2).clamp_min(0.0))
    zero = torch.zeros_like(a)
    return torch.stack([torch.stack([l11, zero], dim=-1), torch.stack([l21, l22], dim=-1)], dim=-2)


def inverse_and_logdet_2x2(cov):
    """cov^-1 = [[c, -b], [-b, a]] / (a c - b^2), and log det cov = log(a c - b^2)."""
    a, b, c = cov[..., 0, 0], cov[..., 1, 0], cov[..., 1, 1]
    det = a * c - b ** 2
    inverse = torch.stack([torch.stack([c, -b], dim=-1), torch.stack([-b, a], dim=-1)], dim=-2)
    return inverse / det[..., None, None], torch.log(det)


def is_diagonal(cov):
    """Whether every matrix of a batch (..., d, d) is diagonal, as the isotropic steps' are."""
    return bool((cov == torch.diag_embed(torch.diagonal(cov, dim1=-2, dim2=-1))).all())


def cholesky(cov):
    """The lower-triangular L with L L^T = cov, for covariances of any size: cholesky_2x2's closed
    form for 2 x 2; the square root of the diagonal for diagonal ones (the images' isotropic
    steps, where a general factorisation of 64 x 64 matrices would cost most of the time);
    torch.linalg otherwise. A zero covariance gives L = 0."""
    if cov.shape[-1] == 2:
        return cholesky_2x2(cov)
    if is_diagonal(cov):
        return torch.diag_embed(torch.sqrt(torch.diagonal(cov, dim1=-2, dim2=-1)))
    return torch.linalg.cholesky(cov)


def inverse_and_logdet(cov):
    """cov^-1 and log det cov for covariances of any size: inverse_and_logdet_2x2's closed form for
    2 x 2; 1 / diagonal and sum log diagonal for diagonal ones; otherwise from the Cholesky factor
    L, log det = 2 sum log diag L."""
    if cov.shape[-1] == 2:
        return inverse_and_logdet_2x2(cov)
    if is_diagonal(cov):
        diagonal = torch.diagonal(cov, dim1=-2, dim2=-1)
        return torch.diag_embed(1.0 / diagonal), torch.log(diagonal).sum(-1)
    factor = torch.linalg.cholesky(cov)
    return torch.cholesky_inverse(factor), 2.0 * torch.log(torch.diagonal(factor, dim1=-2, dim2=-1)).sum(-1)
